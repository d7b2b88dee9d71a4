"""Secret references and the redactor that keeps their values out of every record.

A secret in the deployment file is a reference (``env:NAME`` or ``file:PATH``), never the
value. The value is read only when an adapter needs it (``Secret.reveal()``); every value
revealed is registered with :data:`REDACTOR`, which the logs, the journal and exports run
through, so a value that slips into a message or payload is still replaced.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

from config.errors import OrchestratorError

__all__ = ["Secret", "SecretUnavailable", "Redactor", "REDACTOR", "SECRET_KEY_PATTERN", "REDACTED"]

REDACTED = "[redacted]"

# Keys whose values are secret whatever they hold: payload fields of this name are masked.
SECRET_KEY_PATTERN = re.compile(r"(password|passphrase|secret|private_key|token|(^|_)key$|community)", re.IGNORECASE)


class Redactor:
    """Replaces every known secret value, and every value under a secret-looking key."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def register(self, value: str) -> None:
        if not value or len(value) < 4:
            # Too short to scrub safely without mangling ordinary text; such a secret is
            # refused by config validation anyway.
            return
        with self._lock:
            if value not in self._values:
                self._values.add(value)
                alternatives = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))

    def scrub_text(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern else text

    def scrub(self, value: Any, key: str = "") -> Any:
        """Return a copy of ``value`` (JSON-like) with secrets replaced."""
        if key and SECRET_KEY_PATTERN.search(key) and isinstance(value, (str, Secret)) and value:
            return REDACTED
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, dict):
            return {k: self.scrub(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v) for v in value]
        if isinstance(value, Secret):
            return REDACTED
        return value


REDACTOR = Redactor()


class SecretUnavailable(OrchestratorError, KeyError):
    """A secret's value is not there when it is needed (an unset environment variable).

    An ``OrchestratorError``, so a step that needs it fails the node with this message; also
    the ``KeyError`` that ``reveal()`` has always raised, for the callers that catch that.
    """

    def __str__(self) -> str:  # KeyError's own would quote the message
        return str(self.args[0]) if self.args else ""


class Secret:
    """A reference to a secret value: ``env:NAME`` or ``file:PATH``.

    ``str()`` and ``repr()`` show the reference, never the value.
    """

    __slots__ = ("ref", "_base")

    def __init__(self, ref: str, base: Path | None = None):
        if not (ref.startswith("env:") or ref.startswith("file:")):
            raise ValueError("a secret must be a reference 'env:NAME' or 'file:PATH' (got an inline value)")
        self.ref = ref
        self._base = base

    def reveal(self) -> str:
        """Read the value now. Raises ``SecretUnavailable`` (a ``KeyError``)/``OSError`` when it is not there."""
        kind, _, name = self.ref.partition(":")
        if kind == "env":
            if name not in os.environ:
                raise SecretUnavailable(f"secret {self.ref}: environment variable {name} is not set; set it, run again")
            value = os.environ[name]
        else:
            path = Path(name)
            if not path.is_absolute() and self._base is not None:
                path = self._base / path
            value = path.read_text().strip()
        REDACTOR.register(value)
        return value

    def available(self) -> str | None:
        """``None`` when the value can be read, else what is missing (for validation)."""
        kind, _, name = self.ref.partition(":")
        if kind == "env":
            return None if name in os.environ else f"environment variable {name} is not set"
        path = Path(name)
        if not path.is_absolute() and self._base is not None:
            path = self._base / path
        return None if path.is_file() else f"file {path} does not exist"

    def __repr__(self) -> str:
        return f"Secret({self.ref!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(self.ref)
