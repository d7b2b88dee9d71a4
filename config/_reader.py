"""Reading one TOML table with typed getters that record problems instead of raising.

The loader must report every problem of a file at once, so a getter that finds a missing
field or a wrong type appends ``(field, message)`` to a shared list and returns ``None``;
the semantic checks in :mod:`config._validate` then skip the ``None`` it left behind.
Every key a getter asks for becomes a known key of the table: :meth:`Table.close`
reports the rest as unknown, which is how a typo such as ``vlna = 100`` is caught.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from config.secrets import SECRET_KEY_PATTERN, Secret

__all__ = ["Table", "Problems", "shown", "TYPE_NAMES"]

Problems = list[tuple[str, str]]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_URL_LIKE = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)

TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean (true or false)",
    list: "an array",
    dict: "a table",
}


def shown(value: Any, key: str = "") -> str:
    """``value`` as it may appear in a message: short, and never the value of a secret key."""
    if key and SECRET_KEY_PATTERN.search(key) and isinstance(value, str):
        return f"a value of {len(value)} characters, not shown"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):  # keys only: a misplaced table may hold a secret
        return "{" + ", ".join(f"{k} = ..." for k in value) + "}"
    if isinstance(value, list) and any(isinstance(x, dict) for x in value):
        return f"[{len(value)} tables]"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_ok(value: Any, kind: type) -> bool:
    # bool is an int in Python but never a valid TOML integer or number here.
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _toml_type(value: Any) -> str:
    for kind, name in TYPE_NAMES.items():
        if _type_ok(value, kind) and kind is not float:
            return name
    return TYPE_NAMES[float] if isinstance(value, float) else type(value).__name__


class Table:
    """One table of the file at dotted ``path`` (``"conferencing[2]"``, ``"vcenter"``)."""

    def __init__(self, data: dict[str, Any], path: str, problems: Problems, base: Path):
        self.data = data
        self.path = path
        self.problems = problems
        self.base = base  # the file's directory: relative paths and file: secrets resolve here
        self._known: list[str] = []

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append((self.field(key), message))

    # --- scalars -------------------------------------------------------------------

    def get(self, key: str, kind: type, *, required: bool = True, default: Any = None, fix: str = "") -> Any:
        """The value of ``key`` if it has type ``kind``; else record why (and ``fix``) and return ``None``."""
        self._known.append(key)
        if key not in self.data:
            if required:
                self.problem(
                    key,
                    f"missing required field (got nothing); add {key} = <{TYPE_NAMES[kind]}> to "
                    f"[{self.path or 'top level'}]",
                )
            return default
        value = self.data[key]
        if not _type_ok(value, kind):
            self.problem(
                key,
                f"wrong type: expected {TYPE_NAMES[kind]} (got {_toml_type(value)}: {shown(value, key)}); "
                f"{fix or f'write it as {TYPE_NAMES[kind]}'}",
            )
            return None
        return float(value) if kind is float else value

    def text(self, key: str, *, required: bool = True, default: Any = None) -> Any:
        return self.get(key, str, required=required, default=default)

    def integer(self, key: str, *, required: bool = True, default: Any = None) -> Any:
        return self.get(key, int, required=required, default=default)

    def number(self, key: str, *, required: bool = True, default: Any = None) -> Any:
        return self.get(key, float, required=required, default=default)

    def flag(self, key: str, *, required: bool = True, default: Any = None) -> Any:
        return self.get(key, bool, required=required, default=default)

    def array(self, key: str, item: type, *, required: bool = True, default: Any = ()) -> tuple[Any, ...] | None:
        """An array whose items all have type ``item``, as a tuple (the model is frozen)."""
        value = self.get(key, list, required=required, default=None)
        if value is None:
            return None if key in self.data or required else tuple(default)
        good = True
        for i, x in enumerate(value):
            if not _type_ok(x, item):
                self.problems.append(
                    (
                        f"{self.field(key)}[{i}]",
                        f"wrong type: expected {TYPE_NAMES[item]} (got {_toml_type(x)}: {shown(x)}); "
                        f"every item of {key} must be {TYPE_NAMES[item]}",
                    )
                )
                good = False
        return tuple(value) if good else None

    def file_path(self, key: str, *, required: bool = True, default: Any = None) -> Any:
        """A file path; a relative one is resolved against the file's directory. URLs stay as they are."""
        value = self.text(key, required=required, default=default)
        if not value or _URL_LIKE.match(value):
            return value
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else self.base / path)

    def secret(self, key: str, *, required: bool = True) -> Secret | None:
        """A secret reference ``env:NAME`` or ``file:PATH``; an inline value is refused, never echoed."""
        self._known.append(key)
        if key not in self.data:
            if required:
                self.problem(
                    key,
                    f'missing required secret (got nothing); add {key} = "env:NAME" or "file:PATH" to [{self.path}]',
                )
            return None
        value = self.data[key]
        if not isinstance(value, str):
            self.problem(
                key, f"wrong type: expected a string reference (got {_toml_type(value)}); write env:NAME or file:PATH"
            )
            return None
        kind, sep, name = value.partition(":")
        if not sep or kind not in ("env", "file"):
            self.problem(
                key,
                "secrets must be references (got an inline value, not shown); "
                "write env:NAME or file:PATH, never the value",
            )
            return None
        if kind == "env" and not _ENV_NAME.match(name):
            self.problem(
                key, f"bad environment variable name (got {value!r}); write env:NAME with NAME of letters, digits and _"
            )
            return None
        if kind == "file" and not name:
            self.problem(
                key, "empty file reference (got 'file:'); write file:PATH to a file that holds only the secret"
            )
            return None
        return Secret(value, base=self.base)

    # --- tables --------------------------------------------------------------------

    def table(self, key: str, *, required: bool = True) -> Table | None:
        """The sub-table ``key``; ``None`` (after one problem if required) when absent."""
        data = self.get(key, dict, required=False, fix=f"write it as one section [{self.field(key)}]")
        if key not in self.data and required:
            self.problem(key, f"missing required table (got nothing); add the section [{self.field(key)}]")
        return None if data is None else Table(data, self.field(key), self.problems, self.base)

    def tables(self, key: str) -> list[Table]:
        """The array of tables ``[[key]]``; an empty list when absent."""
        data = self.get(
            key, list, required=False, default=[], fix=f"write it as sections [[{self.field(key)}]], one per item"
        )
        if data is None:
            return []
        out = []
        for i, item in enumerate(data):
            path = f"{self.field(key)}[{i}]"
            if not isinstance(item, dict):
                self.problems.append(
                    (
                        path,
                        f"wrong type: expected a table (got {_toml_type(item)}); write [[{self.field(key)}]] sections",
                    )
                )
                continue
            out.append(Table(item, path, self.problems, self.base))
        return out

    def close(self) -> None:
        """Report every key of the table that no getter asked for (typos, misplaced fields)."""
        known = list(dict.fromkeys(self._known))
        for key in self.data:
            if key in known:
                continue
            import difflib  # here, not at the top: only a bad key needs it, and every command reads a config (#11)

            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.problem(
                key, f"unknown key (got {key!r}); {hint}known keys in [{self.path or 'top level'}]: {', '.join(known)}"
            )
