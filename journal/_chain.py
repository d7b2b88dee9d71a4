"""The hash chain: the journal's tamper evidence, and the head record.

Each event's ``hash`` is ``sha256(prev_hash + canonical_json(content))``; the first
event links to :data:`GENESIS`. The content holds the node-row columns the event set
(``sets``), so the node rows can be derived from the events alone. The chain shows an
edited, deleted or reordered row; the ``head`` meta record (seq and hash of the last
event, unkeyed) shows a naive cut or append. Neither proves who wrote the chain: anyone
can compute sha256. That proof is the Ed25519-signed checkpoints (:mod:`journal._signing`)
checked against a public key the verifier trusts, never one found in the journal.

The same functions check the journal (:mod:`journal._verify`) and its exports
(:mod:`journal._export`), so the two can never disagree on what a valid row is.
"""

from __future__ import annotations

import datetime as _dt
import enum
import hashlib
import json
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

__all__ = [
    "GENESIS",
    "canonical_json",
    "event_hash",
    "content_parts",
    "hash_of_parts",
    "row_hash",
    "head_record",
    "check_head",
    "digest_of",
    "ChainChecker",
]

GENESIS = "0" * 64
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
# The C encoder that _ENCODER.encode makes at every call (with its markers dict and a closure), made once, without
# markers: nothing in it changes, so threads may share it. A cycle, which the markers would have named, recurses
# until RecursionError; then _ENCODER says what it said (#11: 0.6-1 us of each payload and snapshot row, ~3 us).
_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE: Any = (
    _make_c_encoder(
        None,
        _ENCODER.default,
        json.encoder.encode_basestring,
        _ENCODER.indent,
        _ENCODER.key_separator,
        _ENCODER.item_separator,
        _ENCODER.sort_keys,
        _ENCODER.skipkeys,
        _ENCODER.allow_nan,
    )
    if _make_c_encoder is not None
    else None
)


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no spaces, UTF-8 kept, no NaN, a few types converted (_jsonable)."""
    if _C_ENCODE is None or type(value) is str:
        return _ENCODER.encode(value)
    try:
        return "".join(_C_ENCODE(value, 0))
    except RecursionError:
        return _ENCODER.encode(value)  # a cycle: ValueError("Circular reference detected"), as it always was


_encode_str = json.encoder.encode_basestring  # what canonical_json uses for a str


def _js(value: Any) -> str:
    # JSON for one scalar column exactly as canonical_json would write it, without the
    # cost of encoding a whole dict: this runs once per event on the hot path. A str first: eight of an
    # event's twelve fields are one (#11: event_hash 2.7 -> 2.2 us).
    if type(value) is str:
        return _encode_str(value)
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    return canonical_json(value)


def content_parts(
    actor: str, attempt: int, from_state: str | None, kind: str, step: str | None, to_state: str | None
) -> tuple[str, str, str, str]:
    """An event's hashed content around its per-event fields (at, key, node, payload, seq, sets), in four parts.

    These six fields repeat across nodes and commits (one step of a thousand nodes): the write path keeps the
    parts of each cleaned combination (journal/_prepare.py) instead of encoding them again for every event (#11).
    :func:`event_hash` is made of this and :func:`hash_of_parts`: the content's layout is written once.
    """
    return (
        f'{{"actor":{_js(actor)},"at":',
        f',"attempt":{_js(attempt)},"from_state":{_js(from_state)},"key":',
        f',"kind":{_js(kind)},"node":',
        f',"step":{_js(step)},"to_state":{_js(to_state)}}}',
    )


def hash_of_parts(
    prev_hash: str,
    parts: tuple[str, str, str, str],
    at_text: str,
    key: str | None,
    node: str | None,
    payload_text: str,
    seq: int,
    sets_text: str,
) -> str:
    """:func:`event_hash` from :func:`content_parts` and ``at_text``, the JSON of ``at`` (one per commit)."""
    actor_at, attempt_key, kind_node, step_to = parts
    content = (
        f'{actor_at}{at_text}{attempt_key}{_js(key)}{kind_node}{_js(node)},"payload":{payload_text},'
        f'"seq":{_js(seq)},"sets":{sets_text}{step_to}'
    )
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


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
    sets_text: str = "{}",
) -> str:
    """The chain hash of one event, hex: ``sha256(prev_hash + canonical_json(content))``.

    ``content`` is the object of the twelve fields below; ``payload_text`` and
    ``sets_text`` must already be canonical JSON. The string is assembled in sorted-key
    order by hand (:func:`content_parts`), and equals ``canonical_json`` of the dict (a test pins that).
    """
    parts = content_parts(actor, attempt, from_state, kind, step, to_state)
    return hash_of_parts(prev_hash, parts, _js(at), key, node, payload_text, seq, sets_text)


def row_hash(row: tuple[Any, ...] | list[Any]) -> str:
    """Recompute the hash of a full event row (``EVENT_COLUMNS`` order, payload and sets decoded)."""
    sets = row[13] if len(row) > 13 else {}
    return event_hash(
        row[11],
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        canonical_json(row[10]),
        canonical_json(sets),
    )


def head_record(seq: int, hash_: str) -> str:
    """The ``head`` meta value for a chain ending at ``seq``/``hash_``."""
    return f'{{"seq":{seq},"hash":"{hash_}"}}'


def check_head(head_text: str | None, last_seq: int, last_hash: str) -> list[str]:
    """Compare the head record with the chain's real head; the problems found."""
    if head_text is None:
        if last_seq == 0:
            return []
        return [f"seal: missing, but the chain has {last_seq} events (the head was deleted)"]
    try:
        head = json.loads(head_text)
        seq, hash_ = int(head["seq"]), str(head["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        return [f"seal: unreadable ({exc.__class__.__name__}: {exc}); it was edited"]
    if seq > last_seq:
        return [
            f"seal: sealed at seq {seq} but the last event is seq {last_seq}; "
            f"{_events(last_seq + 1, seq)} deleted (truncated)"
        ]
    if seq < last_seq:
        return [
            f"seal: sealed at seq {seq} but events run to seq {last_seq}; "
            f"{_events(seq + 1, last_seq)} appended outside the journal"
        ]
    if hash_ != last_hash:
        return [f"seal: the recorded hash of seq {seq} differs from the event's hash"]
    return []


def _events(first: int, last: int) -> str:
    return f"event {first} was" if first == last else f"events {first}..{last} were"


def digest_of(hashes: Iterable[str]) -> str:
    """sha256 over the concatenated event hashes of an export."""
    digest = hashlib.sha256()
    for h in hashes:
        digest.update(h.encode())
    return digest.hexdigest()


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
        """Check one row (``EVENT_COLUMNS`` order, payload and sets decoded)."""
        try:
            computed = row_hash(row)
        except (TypeError, ValueError) as exc:
            computed = f"<{exc}>"
        self.link(row[0], row[11], row[12], computed, where)

    def start_at(self, seq: int, hash_: str) -> None:
        """Continue a contiguous chain after ``seq`` (an incremental check from a checkpoint)."""
        self.last_seq, self.last_hash = seq, hash_

    def link(self, seq: Any, prev_hash: Any, stored: Any, computed: str, where: str = "") -> None:
        """Check one row whose hash was computed by the caller."""
        last_seq = self.last_seq
        # The common case, a row that links, first: nothing to name (#11: the row's name was formatted for every
        # event a check read, problem or not).
        if computed != stored or seq != last_seq + 1 or prev_hash != self.last_hash or not self.contiguous:
            self._problems_of(seq, prev_hash, stored, computed, where)
        self.count += 1
        self.last_seq = seq if isinstance(seq, int) else last_seq
        self.last_hash = stored

    def _problems_of(self, seq: Any, prev_hash: Any, stored: Any, computed: str, where: str) -> None:
        at = where or f"{self.label} seq {seq}"
        if computed != stored:
            self.problem(f"{at}: content does not match its hash (the row was edited)")
        if self.count == 0 and not self.contiguous:
            pass  # a filtered export may start anywhere in the chain
        elif seq <= self.last_seq:
            self.problem(f"{at}: seq {seq} comes after seq {self.last_seq} (rows were reordered or duplicated)")
        elif seq != self.last_seq + 1 and self.contiguous:
            missing = f"{self.last_seq + 1}" if seq == self.last_seq + 2 else f"{self.last_seq + 1}..{seq - 1}"
            self.problem(f"{at}: seq {missing} missing before it (rows were deleted)")
        elif seq == self.last_seq + 1 and prev_hash != self.last_hash:
            self.problem(
                f"{at}: prev_hash does not link to seq {self.last_seq} (a row was deleted, inserted or reordered)"
            )

    def finish(self) -> list[str]:
        """The problems found, with a count of those left out."""
        if self.dropped:
            return self.problems + [f"... and {self.dropped} more problems"]
        return list(self.problems)
