"""Reading ``secure-mode-policy.toml`` and a deployment's overrides of it.

The policy file is checked against a schema (sections, keys, types, ranges) so that a
hand edit cannot drop a section or misspell a key unnoticed. A deployment may override
only the keys a section lists in ``customizable``; everything else is the guide's value.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from config._reader import TYPE_NAMES, Problems, shown
from config.policy import Policy

__all__ = ["POLICY_PATH", "SCHEMA", "SECTIONS", "read_policy", "flatten"]

POLICY_PATH = Path(__file__).with_name("secure-mode-policy.toml")

# section -> its dataclass, and section -> key -> type (a list type written [item type]):
# the schema is the dataclasses' fields, so the file and the types cannot disagree.
# Each class's hints are evaluated once: get_type_hints per field made this a tenth of `status`'s start-up (#11).
_HINTS = get_type_hints(Policy)
SECTIONS: dict[str, type[Any]] = {f.name: _HINTS[f.name] for f in dataclasses.fields(Policy)}


def _kind(hint: Any) -> Any:
    if get_origin(hint) is Literal:  # the file's type is the choices' type; _validate checks the choice
        return type(get_args(hint)[0])
    return [get_args(hint)[0]] if get_origin(hint) is tuple else hint


def _schema(cls: type[Any]) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: _kind(hints[f.name]) for f in dataclasses.fields(cls)}


SCHEMA: dict[str, dict[str, Any]] = {section: _schema(cls) for section, cls in SECTIONS.items()}

# Allowed ranges (inclusive; None: unbounded) of the values that may change, with why.
RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "security_wizard.sip_udp_listen_port": (1, 65535, "a TCP/UDP port"),
    "security_wizard.sip_tcp_listen_port": (1, 65535, "a TCP/UDP port"),
    "security_wizard.sip_tls_listen_port": (1, 65535, "a TCP/UDP port"),
    # 0 is the wizard's "unlimited", exactly what the guide replaces.
    "security_wizard.active_management_web_sessions": (1, None, "a limit; 0 would mean unlimited"),
    "security_wizard.active_per_user_management_web_sessions": (1, None, "a limit; 0 would mean unlimited"),
    "global_settings.management_qos": (0, 63, "a DSCP value"),
    "global_settings.management_session_timeout": (5, 1440, "minutes, the API's range for management_session_timeout"),
    "location.media_qos": (0, 63, "a DSCP value"),
    "location.signalling_qos": (0, 63, "a DSCP value"),
    "location.mtu": (512, 1500, "the API's range for system_location.mtu"),
    "retry.max_attempts": (1, 100, "attempts"),
    "retry.initial_backoff_s": (0.001, 3600, "seconds"),
    "retry.max_backoff_s": (0.001, 3600, "seconds"),
    "retry.multiplier": (1, 10, "a factor"),
    "retry.jitter": (0, 1, "a fraction"),
    "retry.wait_timeout_s": (1, 86400, "seconds"),
    "concurrency.max_nodes": (1, 10000, "nodes at once"),
    "concurrency.per_host": (1, 64, "side effects at once per host"),
    "journal.checkpoint_every": (1, 1000000, "transitions between signed checkpoints"),
}


_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _type_name(kind: Any) -> str:
    return f"an array of {_PLURALS[kind[0]]}" if isinstance(kind, list) else TYPE_NAMES[kind]


def _has_type(value: Any, kind: Any) -> bool:
    if isinstance(kind, list):
        return isinstance(value, list) and all(_has_type(x, kind[0]) for x in value)
    if isinstance(value, bool) or kind is bool:
        return isinstance(value, bool) and kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` and ``{"a.b": 1}`` both become ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _check_value(key: str, value: Any, kind: Any, problems: Problems, field: str, fix: str) -> bool:
    if not _has_type(value, kind):
        problems.append((field, f"wrong type: expected {_type_name(kind)} (got {shown(value)}); {fix}"))
        return False
    if key in RANGES:
        low, high, what = RANGES[key]
        if (low is not None and value < low) or (high is not None and value > high):
            allowed = f"{low}..{high}" if high is not None else f">= {low}"
            problems.append((field, f"out of range (got {shown(value)}); allowed {allowed} ({what})"))
            return False
    return True


def _read_file(path: Path, problems: Problems) -> dict[str, dict[str, Any]] | None:
    where = str(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        problems.append(
            (
                where,
                "policy file not found (got no file at this path); give an existing file, or leave it out to use the "
                "packaged one",
            )
        )
        return None
    except IsADirectoryError:
        problems.append((where, "not a policy file (got a directory); give the policy's .toml file"))
        return None
    except UnicodeDecodeError:
        problems.append((where, "not a policy file (got bytes that are not UTF-8 text); give the policy's .toml file"))
        return None
    except OSError as exc:
        problems.append(
            (where, f"policy file cannot be read (got {type(exc).__name__}: {exc.strerror}); make it readable")
        )
        return None
    except tomllib.TOMLDecodeError as exc:
        problems.append((where, f"not valid TOML ({exc}); fix the syntax"))
        return None
    fix = f"fix it in {path}"
    for section in data:
        if section not in SCHEMA:
            problems.append(
                (section, f"unknown policy section (got {section!r}); known sections: {', '.join(SCHEMA)}; {fix}")
            )
    for section, keys in SCHEMA.items():
        values = data.get(section)
        if not isinstance(values, dict):
            problems.append(
                (
                    section,
                    f"missing policy section (got {shown(values) if values is not None else 'nothing'}); restore "
                    f"[{section}] in {path}",
                )
            )
            continue
        for key, kind in keys.items():
            if key not in values:
                problems.append((f"{section}.{key}", f"missing policy key (got nothing); restore it in {path}"))
            elif (
                _check_value(f"{section}.{key}", values[key], kind, problems, f"{section}.{key}", fix) and kind is float
            ):
                values[key] = float(values[key])  # TOML writes 30 for 30.0; consumers get one type
        for key in values:
            if key not in keys:
                problems.append(
                    (
                        f"{section}.{key}",
                        f"unknown policy key (got {key!r}); known keys of [{section}]: {', '.join(keys)}; {fix}",
                    )
                )
        customizable = values.get("customizable")
        for key in customizable if isinstance(customizable, list) else []:
            if key not in keys or key == "customizable":
                problems.append((f"{section}.customizable", f"names no key of [{section}] (got {key!r}); {fix}"))
    return data


def _apply_overrides(
    data: dict[str, dict[str, Any]], overrides: Mapping[str, Any], prefix: str, problems: Problems
) -> None:
    for dotted, value in flatten(overrides).items():
        field = f"{prefix}{dotted}"
        section, _, key = dotted.partition(".")
        if section not in SCHEMA or "." in key:
            problems.append((field, f"unknown policy key (got {dotted!r}); known sections: {', '.join(SCHEMA)}"))
            continue
        if key not in SCHEMA[section] or key == "customizable":
            known = [k for k in SCHEMA[section] if k != "customizable"]
            problems.append(
                (field, f"unknown policy key (got {dotted!r}); known keys of [{section}]: {', '.join(known)}")
            )
            continue
        customizable = data[section].get("customizable", [])
        if key not in customizable:
            may = (
                f"only these may be customized: {', '.join(customizable)}"
                if customizable
                else "nothing may be customized"
            )
            problems.append(
                (field, f"fixed by the secure-mode guide, not customizable (got {shown(value)}); in [{section}] {may}")
            )
            continue
        if _check_value(dotted, value, SCHEMA[section][key], problems, field, "write a value of the policy's type"):
            data[section][key] = float(value) if SCHEMA[section][key] is float else value


def _cross_checks(data: dict[str, dict[str, Any]], prefix: str, problems: Problems) -> None:
    wizard = data["security_wizard"]
    per_user, total = wizard["active_per_user_management_web_sessions"], wizard["active_management_web_sessions"]
    if isinstance(per_user, int) and isinstance(total, int) and per_user > total:
        problems.append(
            (
                f"{prefix}security_wizard.active_per_user_management_web_sessions",
                f"greater than active_management_web_sessions (got {per_user} > {total}); a user's limit cannot "
                "exceed the total",
            )
        )
    retry = data["retry"]
    low, high = retry["initial_backoff_s"], retry["max_backoff_s"]
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
        problems.append(
            (f"{prefix}retry.max_backoff_s", f"smaller than initial_backoff_s (got {high} < {low}); raise it")
        )


def read_policy(
    path: str | Path | None, overrides: Mapping[str, Any] | None, prefix: str = ""
) -> tuple[Policy | None, Problems]:
    """The policy at ``path`` with ``overrides`` applied, and every problem found.

    ``prefix`` is put before override field names (``"policy."`` when they come from a
    deployment file's ``[policy]`` table).
    """
    problems: Problems = []
    data = _read_file(Path(path) if path is not None else POLICY_PATH, problems)
    if data is None or problems:
        return None, problems
    if overrides:
        _apply_overrides(data, overrides, prefix, problems)
    _cross_checks(data, prefix, problems)
    if problems:
        return None, problems
    return _typed(data), problems


def _typed(data: dict[str, dict[str, Any]]) -> Policy:
    """The checked sections as their dataclasses; the file's lists become tuples."""
    return Policy(
        **{
            section: cls(
                **{key: tuple(value) if isinstance(value, list) else value for key, value in data[section].items()}
            )
            for section, cls in SECTIONS.items()
        }
    )
