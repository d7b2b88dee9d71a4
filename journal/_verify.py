"""The integrity check of a journal file, in one read snapshot.

What is checked:

- the hash chain (every event's hash, seq order, prev links) and the head record;
- every node row column against the state derived from the events
  (:mod:`journal._derive`), and state continuity (each ``from_state`` is the node's
  previous state);
- every checkpoint's Ed25519 signature against the public key the caller trusts (never
  a key found in the journal), and that each checkpoint (the journal's own, and those of
  an independently kept list) matches the chain at its seq;
- the head signature (meta ``head_signature``, :mod:`journal._head`): signed by the trusted
  key over the actual head, it proves the events after the last checkpoint too;
- ``PRAGMA integrity_check``.

Incremental mode starts from the newest checkpoint whose signature and node snapshot
hold, checks that its head is the chain's event at its seq, and reads only the events
after it: what the engine acts on (the tail and the node rows) is proven, in time
proportional to the events since that checkpoint. The full check reads everything.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from journal import _head
from journal._chain import ChainChecker, check_head, event_hash
from journal._derive import DERIVED_COLUMNS, Deriver, snapshot_digest, text_digest
from journal._records import VerifyReport, VerifyStatus
from journal._signing import CHECKPOINT_FIELDS, PublicKey, checkpoint_signature_ok
from journal.kinds import DEFINITION_CHANGED, DEFINITION_RECORDED, DEPLOYMENT_BOUND, NODE_REGISTERED

_UNBOUND = frozenset({DEPLOYMENT_BOUND, DEFINITION_RECORDED, DEFINITION_CHANGED})  # events of no node the rows read

__all__ = ["KeptSnapshot", "Verification", "integrity_problems", "verify_connection"]

_CHUNK = 5000
_NODE_COLUMNS = ("name", *DERIVED_COLUMNS)
_EVENT_SQL = (
    "SELECT seq, at, node, kind, step, attempt, key, from_state, to_state, actor, payload, "
    "prev_hash, hash, sets FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
)
# The walk that takes each stored hash as the content's (rehash false) reads only what the links and the derived
# rows read: a column not read is a str not made (#11: 9 of the 14 columns, and only a node_registered event's and
# a run-level event's payload, which the rows read, were 2.3 -> 1.5 us of each event read).
_LINK_SQL = (
    f"SELECT seq, at, node, kind, from_state, CASE WHEN node IS NULL OR kind = '{NODE_REGISTERED}' THEN payload END, "
    "prev_hash, hash, sets FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
)


@dataclass
class Verification:
    """A report plus what a checkpoint needs: the derived rows at the head, the head."""

    report: VerifyReport
    snapshot: dict[str, dict[str, Any]] = field(default_factory=dict)
    head: tuple[int, str] = (0, "")
    deployment: str | None = None
    start_digest: str | None = None  # the digest of the stored snapshot an incremental check started from
    touched: set[str] = field(default_factory=set)  # the nodes of the events read after it
    parts: dict[str, str] | None = None  # every node's encoded part at the head, when the check made them


@dataclass
class KeptSnapshot:
    """What this process keeps of the last checkpoint snapshot it stored: the digest it signed and each node's
    encoded ``"name":{...}`` part, so that the next checkpoint (started from that snapshot) re-encodes only the
    nodes with events since (issue #11: 162 checkpoints of 1000 rows). Neither its text nor its rows are kept
    (about 1.3 MB at 1000 nodes; the next check decodes the stored text, as any reader would)."""

    digest: str | None = None
    parts: dict[str, str] = field(default_factory=dict)
    # Where it stands, for the next checkpoint's check from it (journal/_continued.py): the checkpoint's
    # (seq, head), the deployment it named, and this connection's ``PRAGMA data_version`` then.
    seq: int = 0
    head: str = ""
    deployment: str | None = None
    data_version: int | None = None
    guarded: bool = False  # the connection's TEMP triggers that note its own edits of events exist (_continued)


@dataclass
class _Checkpoint:
    origin: str  # "checkpoint #3" or "kept checkpoint line 2"
    record: dict[str, Any]
    signed: bool | None  # None: no key to check it


def verify_connection(
    conn: sqlite3.Connection,
    *,
    public_key: PublicKey | None,
    kept: Iterable[Mapping[str, Any]] | None = None,
    chain_only: bool = False,
    incremental: bool = False,
    integrity: str = "full",
) -> Verification:
    """Check the journal on ``conn`` (see the module's docstring).

    The caller holds the journal's lock; this opens and ends its own read transaction
    unless the caller is in one. ``integrity`` is ``"full"`` (``PRAGMA integrity_check``),
    ``"quick"`` (``quick_check``) or ``"none"``.
    """
    problems: list[str] = []
    own_transaction = not conn.in_transaction
    if own_transaction:
        conn.execute("BEGIN")  # one snapshot: a concurrent writer cannot make rows disagree
    try:
        if integrity != "none":
            problems += integrity_problems(conn, full=integrity == "full")
        try:
            result = _check(conn, public_key, kept, chain_only, incremental, problems)
        except sqlite3.DatabaseError as exc:
            problems.append(f"database: cannot be read ({exc}); the file is damaged")
            result = Verification(VerifyReport(False, problems, 0, False, VerifyStatus.FAILED))
    finally:
        if own_transaction and conn.in_transaction:
            try:
                conn.execute("COMMIT")
            except sqlite3.DatabaseError:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # a read transaction: nothing to lose
    return result


def integrity_problems(conn: sqlite3.Connection, *, full: bool) -> list[str]:
    """SQLite's ``integrity_check`` (``full``) or ``quick_check`` of the file: its problems, none when ok."""
    pragma = "integrity_check" if full else "quick_check"
    try:
        lines = [row[0] for row in conn.execute(f"PRAGMA {pragma}(20)")]
    except sqlite3.DatabaseError as exc:
        return [f"{pragma}: failed ({exc}); the file is damaged"]
    if lines == ["ok"]:
        return []
    return [f"{pragma}: {line}" for line in lines]


def _load_checkpoints(
    conn: sqlite3.Connection,
    public_key: PublicKey | None,
    kept: Iterable[Mapping[str, Any]] | None,
    problems: list[str],
) -> tuple[list[_Checkpoint], list[_Checkpoint]]:
    own = []
    for row in conn.execute(f"SELECT id, {', '.join(CHECKPOINT_FIELDS)}, signature FROM checkpoints ORDER BY id"):
        record = dict(zip(("id", *CHECKPOINT_FIELDS, "signature"), row, strict=True))
        own.append(_Checkpoint(f"checkpoint #{row[0]} (seq {row[1]})", record, None))
    others = []
    for number, item in enumerate(kept or (), start=1):
        if (
            not isinstance(item, Mapping)
            or not isinstance(item.get("seq"), int)
            or not isinstance(item.get("head"), str)
        ):
            problems.append(f"kept checkpoint {number}: not a checkpoint record (needs seq, head, signature)")
            continue
        others.append(_Checkpoint(f"kept checkpoint {number} (seq {item['seq']})", dict(item), None))
    if public_key is not None:
        for cp in own + others:
            cp.signed = checkpoint_signature_ok(public_key, cp.record)
            if not cp.signed:
                problems.append(
                    f"{cp.origin}: signature does not match the trusted public key (forged, or signed with another key)"
                )
    return own, others


def _start(
    conn: sqlite3.Connection, own: list[_Checkpoint], problems: list[str]
) -> tuple[int, str, dict[str, dict[str, Any]], str] | None:
    """The newest signed checkpoint whose node snapshot holds: (seq, head, snapshot, its signed digest)."""
    for cp in reversed(own):
        if not cp.signed:
            continue
        row = conn.execute("SELECT snapshot FROM checkpoints WHERE id = ?", (cp.record["id"],)).fetchone()
        if row is None or row[0] is None:
            continue  # an older checkpoint: its snapshot was dropped when a newer one was made
        try:
            snapshot = json.loads(row[0])
        except (TypeError, ValueError):
            snapshot = None
        # The text as stored is the canonical JSON that was signed: its hash is enough, no re-encoding
        # (issue #11); any other text equal in meaning is still checked the long way.
        stored = isinstance(row[0], str) and isinstance(snapshot, dict) and text_digest(row[0]) == cp.record["nodes"]
        if not stored and (not isinstance(snapshot, dict) or snapshot_digest(snapshot) != cp.record["nodes"]):
            problems.append(f"{cp.origin}: its node snapshot does not match the signed digest (edited)")
            continue
        return int(cp.record["seq"]), str(cp.record["head"]), snapshot, str(cp.record["nodes"])
    return None


def _definition_problems(deriver: Deriver, meta: Mapping[str, str]) -> list[str]:
    """Meta ``definition_hash`` (in ``meta``, the rows :func:`meta_values` read) is the one the latest definition
    event recorded (or, a crash between that event and the meta update, the one it replaced): an edit cannot pass
    a journal of another lifecycle as this one's."""
    if deriver.definition is None:
        return []  # none in the events read (an incremental check from a checkpoint after it)
    seq, recorded, replaced = deriver.definition
    value = meta.get("definition_hash")
    if value == recorded or (replaced is not None and value == replaced):
        return []
    return [
        f"meta definition_hash {value!r} differs from the lifecycle definition event seq {seq} ({recorded!r}): "
        "it was edited"
    ]


def _check_snapshots(conn: sqlite3.Connection, own: list[_Checkpoint], problems: list[str]) -> None:
    """Each signed checkpoint's kept node snapshot matches the digest it signed."""
    for cp in own:
        if cp.signed:
            row = conn.execute("SELECT snapshot FROM checkpoints WHERE id = ?", (cp.record["id"],)).fetchone()
            if row is not None and row[0] is not None and not _snapshot_ok(row[0], cp.record["nodes"]):
                problems.append(f"{cp.origin}: its node snapshot does not match the signed digest (edited)")


def _snapshot_ok(text: str, digest: object) -> bool:
    try:
        snapshot = json.loads(text)
    except (TypeError, ValueError):
        return False
    return isinstance(snapshot, dict) and snapshot_digest(snapshot) == digest


def _check(
    conn: sqlite3.Connection,
    public_key: PublicKey | None,
    kept: Iterable[Mapping[str, Any]] | None,
    chain_only: bool,
    incremental: bool,
    problems: list[str],
) -> Verification:
    if chain_only:
        public_key = None
    own, others = _load_checkpoints(conn, public_key, kept, problems)
    chain = ChainChecker(contiguous=True)
    deriver = Deriver()
    start_seq = 1
    start_digest = None
    if incremental and public_key is not None:
        start = _start(conn, own, problems)
        if start is not None:
            seq, head, snapshot, digest = start
            row = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
            if row is None or row[0] != head:
                problems.append(f"checkpoint at seq {seq}: the chain's event seq {seq} is not the signed head")
            else:
                chain.start_at(seq, head)
                deriver = Deriver.from_snapshot(snapshot)  # a row copied at its first event: ``snapshot`` unchanged
                start_seq = seq + 1
                start_digest = digest
    else:
        _check_snapshots(conn, own, problems)  # what the next incremental check would start from
    by_seq: dict[int, list[_Checkpoint]] = {}
    for cp in own + others:
        by_seq.setdefault(int(cp.record["seq"]), []).append(cp)
    events = _walk(conn, chain, deriver, start_seq - 1, by_seq)
    last_seq, last_hash = chain.last_seq, chain.last_hash
    problems[:0] = chain.finish()
    problems += deriver.problems[:50]
    meta = meta_values(conn)
    problems += check_head(meta.get("head"), last_seq, last_hash)
    signed_seq = _match_checkpoints(conn, by_seq, start_seq, last_seq, problems)
    deployment = meta.get("deployment")
    if deriver.deployment is not None and deriver.deployment[1] != deployment:
        problems.append(
            f"meta deployment {deployment!r} differs from the deployment_bound event seq "
            f"{deriver.deployment[0]} ({deriver.deployment[1]!r}): it was edited"
        )
    problems += _definition_problems(deriver, meta)
    head_signed: bool | None = None
    if public_key is not None and last_seq > 0:
        head_signed, head_problems = _head.check(
            conn, public_key, deployment, last_seq, last_hash, value=meta.get(_head.HEAD_SIGNATURE)
        )
        problems += head_problems
        if head_signed:
            signed_seq = last_seq  # the head's signature proves every event up to it
    for cp in own + others:
        if cp.signed is not False and cp.record.get("deployment") != deployment:
            problems.append(
                f"{cp.origin}: signed for deployment {cp.record.get('deployment')!r}, the journal says {deployment!r}"
            )
    problems += _node_problems(conn, deriver)
    ok = not problems
    notes = []
    if chain_only:
        status = VerifyStatus.CHAIN_ONLY if ok else VerifyStatus.FAILED
        notes.append("warning: chain only: signatures were not checked, so this does not show who wrote the chain")
        sealed = None
    elif not ok:
        status, sealed = VerifyStatus.FAILED, (False if any(cp.signed is False for cp in own + others) else None)
    elif public_key is None:
        status, sealed = VerifyStatus.UNVERIFIED, None
        notes.append(
            "warning: UNVERIFIED: no trusted public key was given, so the checkpoint signatures "
            "were not checked (anyone able to write the journal could have rewritten it)"
        )
    elif signed_seq == 0 and last_seq > 0:
        status, sealed = VerifyStatus.UNVERIFIED, None
        notes.append(f"warning: UNVERIFIED: no signed checkpoint covers any of the {last_seq} events")
    else:
        status, sealed = VerifyStatus.VERIFIED, True
        if last_seq > signed_seq:
            tail = (
                f"event {last_seq} comes" if last_seq == signed_seq + 1 else f"events {signed_seq + 1}..{last_seq} come"
            )
            notes.append(
                f"warning: {tail} after the last signed checkpoint (seq {signed_seq}); "
                "they are chained but not yet signed"
            )
    if head_signed is None and public_key is not None and last_seq > signed_seq:
        notes.append(
            "warning: no head signature (written before head signatures, or by a writer without the key): "
            "commands that act refuse a journal whose last event no signed checkpoint covers"
        )
    report = VerifyReport(
        ok=ok,
        problems=problems + notes,
        events=events,
        sealed=sealed,
        status=status,
        signed_seq=signed_seq,
        start_seq=start_seq,
        head_seq=last_seq,
        head_signed=head_signed,
    )
    # The deriver's own rows (it is dropped here): no copy of every row at each checkpoint.
    return Verification(report, deriver.rows, (last_seq, last_hash), deployment, start_digest, deriver.touched)


def _walk(
    conn: sqlite3.Connection,
    chain: ChainChecker,
    deriver: Deriver,
    after: int,
    by_seq: dict[int, list[_Checkpoint]],
    *,
    rehash: bool = True,
) -> int:
    """Feed the events after seq ``after`` to ``chain`` and ``deriver``; how many.

    ``rehash`` false: each stored hash is taken as the content's (its links, order and gaps are still checked):
    for events this connection appended and is known not to have changed since (journal/_continued.py).
    """
    feed, link, count = deriver.feed, chain.link, 0
    loads = json.loads
    # Many events set the same columns to the same values (one step across a thousand nodes): each distinct
    # ``sets`` text is decoded once. The deriver only reads the decoded object, never changes it.
    decoded: dict[str, Any] = {}
    sql = _EVENT_SQL if rehash else _LINK_SQL
    while True:
        rows = conn.execute(sql, (after, _CHUNK)).fetchall()
        if not rows:
            return count
        for row in rows:
            if rehash:
                seq, at, node, kind, step, attempt, key, from_state, to_state, actor, payload, prev, stored, sets = row
                try:
                    computed = event_hash(
                        prev, seq, at, node, kind, step, attempt, key, from_state, to_state, actor, payload, sets
                    )
                except (TypeError, ValueError) as exc:
                    computed = f"<{exc}>"
            else:
                seq, at, node, kind, from_state, payload, prev, stored, sets = row
                computed, to_state = stored, None  # the deriver reads no to_state (its sets say the state)
            link(seq, prev, stored, computed)
            if node is not None:
                try:
                    decoded_sets = decoded.get(sets)
                    if decoded_sets is None:
                        if len(decoded) > 10_000:
                            decoded.clear()
                        decoded_sets = decoded[sets] = loads(sets)
                    decoded_payload = loads(payload) if kind == NODE_REGISTERED else None
                except (TypeError, ValueError):
                    decoded_sets, decoded_payload = {}, None  # the hash already failed: reported
                feed(seq, at, node, kind, from_state, to_state, decoded_payload, decoded_sets)
            elif kind in _UNBOUND:
                try:
                    feed(seq, at, node, kind, from_state, to_state, loads(payload), None)
                except (TypeError, ValueError):
                    pass
        count += len(rows)
        if len(rows) < _CHUNK:
            return count  # the last chunk: no query for an empty one (issue #11: one more per checkpoint)
        after = rows[-1][0]


_META_NAMES = ("head", "deployment", "definition_hash", _head.HEAD_SIGNATURE)
_META_SQL = f"SELECT name, value FROM meta WHERE name IN ({', '.join('?' * len(_META_NAMES))})"


def meta_values(conn: sqlite3.Connection) -> dict[str, str]:
    """The meta rows a check reads (head, deployment, definition hash, head signature), in one statement."""
    return dict(conn.execute(_META_SQL, _META_NAMES).fetchall())


def _match_checkpoints(
    conn: sqlite3.Connection,
    by_seq: dict[int, list[_Checkpoint]],
    start_seq: int,
    last_seq: int,
    problems: list[str],
) -> int:
    """Compare every checkpoint with the chain; the last seq a signed checkpoint proves."""
    signed_seq = 0
    for seq in sorted(by_seq):
        for cp in by_seq[seq]:
            if seq > last_seq:
                problems.append(
                    f"{cp.origin}: the chain ends at seq {last_seq}; events {last_seq + 1}..{seq} "
                    "were deleted (truncated)"
                )
                continue
            row = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone() if seq > 0 else None
            actual = row[0] if row else None
            if seq > 0 and actual != cp.record["head"]:
                problems.append(
                    f"{cp.origin}: says seq {seq} had head {str(cp.record['head'])[:16]}..., the chain's "
                    f"event seq {seq} has {str(actual)[:16]}... (the history was rewritten)"
                )
                continue
            if cp.signed:
                signed_seq = max(signed_seq, seq)
    return signed_seq


def _node_rows(conn: sqlite3.Connection, only: Collection[str] | None) -> Iterator[tuple[Any, ...]]:
    sql = f"SELECT {', '.join(_NODE_COLUMNS)} FROM nodes"
    if only is None:
        yield from conn.execute(sql + " ORDER BY rowid")
        return
    names = sorted(only)
    for at in range(0, len(names), 500):  # well under SQLite's limit of bound variables
        chunk = names[at : at + 500]
        yield from conn.execute(f"{sql} WHERE name IN ({', '.join('?' * len(chunk))})", chunk)


def _node_problems(conn: sqlite3.Connection, deriver: Deriver, only: Collection[str] | None = None) -> list[str]:
    """Every node row against the derived rows; ``only``: just the rows of these nodes (the others are known equal)."""
    problems = []
    derived = deriver.rows
    names = set()
    columns = itemgetter(*DERIVED_COLUMNS)
    for row in _node_rows(conn, only):
        name = row[0]
        names.add(name)
        expected = derived.get(name)
        if expected is None:
            problems.append(f"node {name}: has no events (the row was inserted outside the journal)")
            continue
        if row[1:] == columns(expected):
            continue  # every column equal: the loop below would find nothing (issue #11: it ran at each checkpoint)
        latest = expected["last_seq"]
        for column, value in zip(DERIVED_COLUMNS, row[1:], strict=True):
            want = expected[column]
            if column == "maintenance":
                value, want = bool(value), bool(want)
            if value == want:
                continue
            if column == "state":
                problems.append(
                    f"node {name}: state {value!r} disagrees with to_state {want!r} "
                    f"of its latest event seq {latest} (the row or its events were changed)"
                )
            elif column == "last_seq":
                problems.append(f"node {name}: last_seq {value} but its latest event is seq {want}")
            else:
                problems.append(
                    f"node {name}: {column} is {value!r} in its row but {want!r} from its events "
                    f"(latest seq {latest}): the row was edited outside the journal"
                )
    for name in sorted(set(derived if only is None else only) - names):
        problems.append(f"node {name}: has events up to seq {derived[name]['last_seq']} but no row (deleted)")
    return problems
