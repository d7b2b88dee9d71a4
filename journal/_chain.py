"""The hash chain and the HMAC seal: the journal's tamper evidence.

Each event's ``hash`` is ``sha256(prev_hash + canonical_json(content))``; the first
event links to :data:`GENESIS`. The chain alone shows an edited, deleted or reordered
row, but not a cut tail or a row appended with a correctly computed hash: anyone can
compute sha256. So the head of the chain is sealed with an HMAC whose key lives in a
file beside the journal, not inside it; someone editing the database with the sqlite3
shell cannot forge the seal.

The same functions check the journal (:mod:`journal._verify`) and its exports
(:mod:`journal._export`), so the two can never disagree on what a valid row is.
"""

from __future__ import annotations

import datetime as _dt
import enum
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path, PurePath
from typing import Any, Iterable

from config.errors import JournalError

__all__ = [
    "GENESIS",
    "KEY_BYTES",
    "canonical_json",
    "event_hash",
    "row_hash",
    "seal_mac",
    "make_seal",
    "Sealer",
    "check_seal",
    "digest_of",
    "digest_mac",
    "load_key",
    "create_key",
    "ChainChecker",
]

GENESIS = "0" * 64
KEY_BYTES = 32
_MAX_PROBLEMS = 50  # past this a tampered journal's report says "and N more"


def _jsonable(value: Any) -> Any:
    # Deterministic conversions for the few non-JSON types a payload commonly carries;
    # anything else is a programming error, named so it can be fixed.
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(
        f"journal payloads must be JSON data; a {type(value).__name__} ({value!r}) is not: "
        "convert it to a str, number, list or dict first"
    )


# One encoder reused: json.dumps with non-default arguments builds a new one per call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_jsonable
)
canonical_json = _ENCODER.encode


_encode_str = json.encoder.encode_basestring  # what canonical_json uses for a str


def _js(value: Any) -> str:
    # JSON for one scalar column exactly as canonical_json would write it, without the
    # cost of encoding a whole dict: this runs once per event on the hot path.
    if value is None:
        return "null"
    if type(value) is str:
        return _encode_str(value)
    if type(value) is int:
        return str(value)
    return canonical_json(value)


def event_hash(
    prev_hash: str,
    seq: int,
    at: str,
    node: str | None,
    kind: str,
    step: str | None,
    attempt: int,
    key: str | None,
    from_state: str | None,
    to_state: str | None,
    actor: str,
    payload_text: str,
) -> str:
    """The chain hash of one event, hex: ``sha256(prev_hash + canonical_json(content))``.

    ``content`` is the object of the eleven fields below; ``payload_text`` must already be
    ``canonical_json(payload)``. The string is assembled in sorted-key order by hand, and
    equals ``canonical_json`` of the dict (a test pins that).
    """
    content = (
        f'{{"actor":{_js(actor)},"at":{_js(at)},"attempt":{_js(attempt)},'
        f'"from_state":{_js(from_state)},"key":{_js(key)},"kind":{_js(kind)},'
        f'"node":{_js(node)},"payload":{payload_text},"seq":{_js(seq)},'
        f'"step":{_js(step)},"to_state":{_js(to_state)}}}'
    )
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


def row_hash(row: tuple[Any, ...] | list[Any]) -> str:
    """Recompute the hash of a full event row (``EVENT_COLUMNS`` order, payload decoded)."""
    return event_hash(row[11], *row[:10], canonical_json(row[10]))


def seal_mac(key: bytes, seq: int, hash_: str) -> str:
    """HMAC-SHA256 of ``f"{seq}:{hash}"``: binds the chain's head to the key."""
    return hmac.new(key, f"{seq}:{hash_}".encode(), hashlib.sha256).hexdigest()


class Sealer:
    """Makes seals with one key; the keyed HMAC state is built once and copied."""

    def __init__(self, key: bytes) -> None:
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)

    def seal(self, seq: int, hash_: str) -> str:
        """The ``head`` meta value for a chain ending at ``seq``/``hash_``."""
        mac = self._hmac.copy()
        mac.update(f"{seq}:{hash_}".encode())
        # Plain JSON of an int and two hex strings: nothing to escape.
        return f'{{"seq":{seq},"hash":"{hash_}","mac":"{mac.hexdigest()}"}}'


def make_seal(key: bytes, seq: int, hash_: str) -> str:
    """The ``head`` meta value for a chain ending at ``seq``/``hash_``."""
    return Sealer(key).seal(seq, hash_)


def check_seal(
    seal_text: str | None, last_seq: int, last_hash: str, key: bytes | None
) -> tuple[list[str], bool | None]:
    """Compare the seal with the chain's real head. Returns ``(problems, sealed)``."""
    if seal_text is None:
        if last_seq == 0:
            return [], (True if key is not None else None)
        return [f"seal: missing, but the chain has {last_seq} events (the head was deleted)"], False
    try:
        seal = json.loads(seal_text)
        seq, hash_, mac = int(seal["seq"]), str(seal["hash"]), str(seal["mac"])
    except (ValueError, KeyError, TypeError) as exc:
        return [f"seal: unreadable ({exc.__class__.__name__}: {exc}); it was edited"], False
    sealed: bool | None = None
    if key is not None:
        sealed = hmac.compare_digest(mac, seal_mac(key, seq, hash_))
        if not sealed:
            # A forged seal says nothing about where the head was: compare no further.
            return [f"seal: the MAC of seq {seq} does not match the key; the seal was edited or forged"], False
    problems: list[str] = []
    if seq > last_seq:
        problems.append(
            f"seal: sealed at seq {seq} but the last event is seq {last_seq}; "
            f"{_events(last_seq + 1, seq)} deleted (truncated)"
        )
    elif seq < last_seq:
        problems.append(
            f"seal: sealed at seq {seq} but events run to seq {last_seq}; "
            f"{_events(seq + 1, last_seq)} appended outside the journal"
        )
    elif hash_ != last_hash:
        problems.append(f"seal: the sealed hash of seq {seq} differs from the event's hash")
    if problems and sealed:
        sealed = False
    return problems, sealed


def _events(first: int, last: int) -> str:
    return f"event {first} was" if first == last else f"events {first}..{last} were"


def digest_of(hashes: Iterable[str]) -> str:
    """sha256 over the concatenated event hashes of an export."""
    digest = hashlib.sha256()
    for h in hashes:
        digest.update(h.encode())
    return digest.hexdigest()


def digest_mac(key: bytes, digest: str) -> str:
    """HMAC-SHA256 of an export's digest."""
    return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()


def load_key(path: Path) -> bytes | None:
    """The seal key from ``path``, or ``None`` when the file does not exist."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalError(f"journal key file {path}: cannot be read ({exc}); fix its permissions") from exc
    if len(key) < 16:
        raise JournalError(
            f"journal key file {path}: holds {len(key)} bytes, expected {KEY_BYTES}; "
            "restore the original key file"
        )
    return key


def create_key(path: Path) -> bytes:
    """Write a new random key to ``path`` (mode 0600, never overwriting) and return it."""
    key = secrets.token_bytes(KEY_BYTES)
    try:
        # O_EXCL: two processes opening a new journal at once must not each write a key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = load_key(path)
        assert existing is not None
        return existing
    except OSError as exc:
        raise JournalError(f"journal key file {path}: cannot be created ({exc})") from exc
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


class ChainChecker:
    """Checks rows one by one: hash, order, gaps and prev links.

    ``contiguous`` demands seq 1, 2, 3, ... from the genesis (a journal, an unfiltered
    export). Otherwise (a filtered export) seqs need only increase, and prev links are
    checked wherever two rows are neighbours in the chain.
    """

    def __init__(self, *, contiguous: bool, label: str = "event") -> None:
        self.contiguous = contiguous
        self.label = label
        self.problems: list[str] = []
        self.dropped = 0
        self.count = 0
        self.last_seq = 0
        self.last_hash = GENESIS

    def problem(self, text: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.dropped += 1

    def feed(self, row: tuple[Any, ...] | list[Any], where: str = "") -> None:
        """Check one row (``EVENT_COLUMNS`` order, payload decoded)."""
        seq, prev_hash, stored = row[0], row[11], row[12]
        at = where or f"{self.label} seq {seq}"
        try:
            computed = row_hash(row)
        except (TypeError, ValueError) as exc:
            computed = f"<{exc}>"
        if computed != stored:
            self.problem(f"{at}: content does not match its hash (the row was edited)")
        if self.count == 0 and not self.contiguous:
            pass  # a filtered export may start anywhere in the chain
        elif seq <= self.last_seq:
            self.problem(
                f"{at}: seq {seq} comes after seq {self.last_seq} (rows were reordered or duplicated)"
            )
        elif seq != self.last_seq + 1 and self.contiguous:
            missing = f"{self.last_seq + 1}" if seq == self.last_seq + 2 else f"{self.last_seq + 1}..{seq - 1}"
            self.problem(f"{at}: seq {missing} missing before it (rows were deleted)")
        elif seq == self.last_seq + 1 and prev_hash != self.last_hash:
            self.problem(
                f"{at}: prev_hash does not link to seq {self.last_seq} "
                "(a row was deleted, inserted or reordered)"
            )
        self.count += 1
        self.last_seq = seq if isinstance(seq, int) else self.last_seq
        self.last_hash = stored

    def finish(self) -> list[str]:
        """The problems found, with a count of those left out."""
        if self.dropped:
            return self.problems + [f"... and {self.dropped} more problems"]
        return list(self.problems)
