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

# Keys whose values are secret whatever they hold: payload fields of this name are masked. Not
# "community": the SNMP community is a configured name shown in plans (``snmp.community`` is text, not
# a secret reference); the SNMPv3 passwords that guard the agent match "password".
SECRET_KEY_PATTERN = re.compile(r"(password|passphrase|secret|private_key|token|(^|_)key$)", re.IGNORECASE)


class Redactor:
    """Replaces every known secret value, and every value under a secret-looking key.

    The values are matched by a few compiled patterns: a run registers a new random password per
    Conferencing Node, and one pattern of every value, rebuilt at each registration, cost O(n^2)
    (15 s of 24 for 300 nodes). New values go to a small pattern of at most ``CHUNK``; full ones are
    merged two equal sizes at a time (as an LSM tree merges runs), so each value is compiled
    O(log n) times and a text is searched by O(log n) patterns. Each pattern's matches are found in
    the original text and their union replaced, so a secret that contains another is masked whole.
    """

    CHUNK = 16

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._frozen: list[tuple[list[str], re.Pattern[str]]] = []
        self._tail: list[str] = []
        self._patterns: tuple[re.Pattern[str], ...] = ()
        self._shapes: list[str] = []  # regexes of generated secrets (register_shape)
        self._short: tuple[tuple[re.Pattern[str], ...], dict[str, str]] = ((), {})

    def register_shape(self, pattern: str) -> None:
        """Mask every match of ``pattern``: a family of generated secrets, one regex for all of them.

        A run makes a random password per Conferencing Node (issue #11): registering each value made
        every text pass O(log n) patterns; a shape costs one alternative of the same pattern whatever n.
        """
        re.compile(pattern)  # a bad pattern fails here, not in every later scrub
        with self._lock:
            if pattern not in self._shapes:
                self._shapes.append(pattern)
                self._rebuild_tail()

    def _rebuild_tail(self) -> None:
        # The shapes are a pattern of their own: a value's match and a shape's at the same place are
        # both masked whole (the union of spans), whichever is longer.
        patterns = [pattern for _, pattern in self._frozen]
        if self._tail:
            patterns.append(_alternatives(self._tail))
        if self._shapes:
            patterns.append(re.compile("|".join(f"(?:{shape})" for shape in self._shapes)))
        self._patterns = tuple(patterns)

    def register(self, value: str) -> None:
        if not value or len(value) < 4:
            # Too short to scrub safely without mangling ordinary text; such a secret is
            # refused by config validation anyway.
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            self._tail.append(value)
            if len(self._tail) >= self.CHUNK:
                run, self._tail = self._tail, []
                while self._frozen and len(self._frozen[-1][0]) <= len(run):
                    run = self._frozen.pop()[0] + run
                self._frozen.append((run, _alternatives(run)))
            self._rebuild_tail()

    def scrub_text(self, text: str) -> str:
        patterns = self._patterns  # one snapshot: register replaces the tuple, never edits it
        if not patterns:
            return text
        if len(text) > _SHORT:
            return _scrub(patterns, text)
        # Short texts repeat (kinds, steps, states, node names: every journaled transition scrubs
        # them, issue #11): their answers are kept for these patterns, and dropped with them.
        # Most distinct short texts are seen once or twice (each attempt's idempotency key): a full
        # cache starts again, so the texts that repeat come back at once and the memory stays
        # at _SHORT_KEPT answers (8192 kept forever were ~0.9 MB in a 1000-node simulation).
        known = self._short
        if known[0] is not patterns:
            known = self._short = (patterns, {})
        answer = known[1].get(text)
        if answer is None:
            answer = _scrub(patterns, text)
            if len(known[1]) >= _SHORT_KEPT:
                known[1].clear()
            known[1][text] = answer
        return answer

    def scrub(self, value: Any, key: str = "") -> Any:
        """``value`` (JSON-like) with secrets replaced: a copy where anything was, never an edit in place.

        A dict or list in which nothing is secret is returned itself, not copied (issue #11: every
        journaled payload passes here, and a 1000-node run's recap copied whole was ~0.5 MB at the
        run's memory peak); a tuple, a subclass or a ``Secret`` is always converted as before.
        """
        if key and _secret_key(key) and isinstance(value, (str, Secret)) and value:
            return REDACTED
        # The exact JSON types first, by type(): every journaled payload passes here (#7: the isinstance
        # chain and a regex per key were a third of a commit's preparation); subclasses take the chain below.
        kind = type(value)
        if kind is str:
            clean = self.scrub_text(value)
            return value if clean == value else clean  # an equal answer kept for another text is not a change
        if kind is dict:
            copied: dict[Any, Any] | None = None
            for k, v in value.items():
                clean = self.scrub(v, k if type(k) is str else str(k))
                if clean is not v:
                    if copied is None:
                        copied = dict(value)  # the same keys in the same order; only changed values replaced
                    copied[k] = clean
            return value if copied is None else copied
        if kind is list:
            items: list[Any] | None = None
            for i, v in enumerate(value):
                clean = self.scrub(v)
                if clean is not v:
                    if items is None:
                        items = list(value)
                    items[i] = clean
            return value if items is None else items
        if kind is int or kind is bool or kind is float or value is None:
            return value
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, dict):
            return {k: self.scrub(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v) for v in value]
        if isinstance(value, Secret):
            return REDACTED
        return value


_SECRET_KEYS: dict[str, bool] = {}  # SECRET_KEY_PATTERN's answer per key: payload keys repeat
_SECRET_KEYS_KEPT = 4096


def _secret_key(key: str) -> bool:
    answer = _SECRET_KEYS.get(key)
    if answer is None:
        answer = SECRET_KEY_PATTERN.search(key) is not None
        if len(_SECRET_KEYS) < _SECRET_KEYS_KEPT:
            _SECRET_KEYS[key] = answer
    return answer


_SHORT = 64  # texts up to this long have their answer kept (Redactor.scrub_text)
_SHORT_KEPT = 2048


def _scrub(patterns: tuple[re.Pattern[str], ...], text: str) -> str:
    if len(patterns) == 1:
        return patterns[0].sub(REDACTED, text)
    for pattern in patterns:
        if pattern.search(text):
            break
    else:
        return text  # the common case: no secret at all, found without building a list
    spans = sorted(m.span() for pattern in patterns for m in pattern.finditer(text))
    if not spans:
        return text
    out, at = [], 0
    start, end = spans[0]
    for s, e in spans[1:]:
        if s <= end:  # overlapping or touching: one masked run
            end = max(end, e)
            continue
        out += [text[at:start], REDACTED]
        at, (start, end) = end, (s, e)
    out += [text[at:start], REDACTED, text[end:]]
    return "".join(out)


REDACTOR = Redactor()


def _alternatives(values: list[str]) -> re.Pattern[str]:
    """One pattern of ``values``, the longest first (a secret containing another is matched whole)."""
    return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))


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
