"""A run's periodic checkpoint, checked from this connection's previous checkpoint (issue #11).

A checkpoint signs only a journal that verifies. The incremental check (:mod:`journal._verify`)
starts from the newest signed checkpoint's stored snapshot: it decodes every node's row, checks
every checkpoint's signature and compares every node row, so each periodic checkpoint of a run
cost O(nodes + checkpoints), and a 1000-node simulation's 160 of them 3 s.

When the previous checkpoint was made by this very connection and no other connection has
committed since (``PRAGMA data_version``, read inside the checkpoint's write transaction, so no
commit slips in before the signature), what that check proved still holds except for what this
connection appended since. So only the events after it are read (links, order, continuity, the
rows they derive), and only the rows of the nodes they touched are compared with the derived rows;
their hashes are not computed again: this connection computed them as it appended the events, and
TEMP triggers of its own (:data:`GUARD`) note any event it changed in place since (the journal only
appends: an UPDATE or DELETE of an event is some other code of this process writing SQL), which is
refused; the head record, the
head signature, the deployment, the lifecycle definition, the newest checkpoint row and the
number of node rows are checked as by the long way. Anything else (another writer, this
process's first checkpoint, an earlier failure) takes the long way. ``journal verify``, the
checks before acting and the closing checkpoint of a run never take this path.
"""

from __future__ import annotations

import sqlite3

from journal import _head
from journal._chain import ChainChecker, _encode_str, canonical_json, check_head
from journal._derive import Deriver
from journal._records import VerifyReport, VerifyStatus
from journal._signing import PublicKey
from journal._verify import KeptSnapshot, Verification, _definition_problems, _node_problems, _walk, meta_values

__all__ = ["continued", "data_version"]

# The journal only appends events. This connection's own UPDATE or DELETE of one (outside the journal's API) is
# not seen by PRAGMA data_version: these TEMP triggers, which fire for this connection's statements only and cost
# nothing while no event is changed, note it. So the events this connection appended since its previous
# checkpoint need not be hashed again: they are what it hashed when it appended them.
GUARD = (
    "CREATE TEMP TABLE IF NOT EXISTS journal_event_edits (seq INTEGER, how TEXT)",
    "CREATE TEMP TRIGGER IF NOT EXISTS journal_event_updated AFTER UPDATE ON main.events "
    "BEGIN INSERT INTO journal_event_edits VALUES (old.seq, 'edited'); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS journal_event_deleted AFTER DELETE ON main.events "
    "BEGIN INSERT INTO journal_event_edits VALUES (old.seq, 'deleted'); END",
)
FORGET_EDITS = "DELETE FROM journal_event_edits"  # after a check that read every event it proves again

_KEPT_SQL = (
    "SELECT (SELECT hash FROM events WHERE seq = ?), (SELECT count(*) FROM journal_event_edits), seq, head, nodes "
    "FROM checkpoints ORDER BY id DESC LIMIT 1"
)


def data_version(conn: sqlite3.Connection) -> int:
    """This connection's ``PRAGMA data_version``: it changes when another connection commits."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def continued(conn: sqlite3.Connection, public_key: PublicKey, kept: KeptSnapshot, version: int) -> Verification | None:
    """The check from ``kept`` (this connection's previous checkpoint); None: it does not apply, take the long way.

    The caller holds the journal's lock inside a write transaction (``BEGIN IMMEDIATE``), in which it read
    ``version`` (:func:`data_version`).
    """
    if kept.digest is None or kept.data_version is None or kept.seq <= 0 or not kept.guarded:
        return None
    if version != kept.data_version:
        return None  # another connection committed since: whatever it may have changed is read again
    # The event at the kept checkpoint's seq and the newest checkpoint row, in one statement.
    row = conn.execute(_KEPT_SQL, (kept.seq,)).fetchone()
    if row is None or (row[0], *row[2:]) != (kept.head, kept.seq, kept.head, kept.digest):
        return None  # not as this connection left it: the long way says what changed
    problems = [
        f"event seq {seq}: {how} in place by this process, outside the journal (the journal only appends)"
        for seq, how in (
            conn.execute("SELECT seq, how FROM journal_event_edits ORDER BY rowid LIMIT 20") if row[1] else ()
        )
    ]
    chain = ChainChecker(contiguous=True)
    chain.start_at(kept.seq, kept.head)
    deriver = Deriver.from_parts(kept.parts)
    events = _walk(conn, chain, deriver, kept.seq, {}, rehash=False)
    last_seq, last_hash = chain.last_seq, chain.last_hash
    problems += chain.finish()
    problems += deriver.problems[:50]
    meta = meta_values(conn)
    problems += check_head(meta.get("head"), last_seq, last_hash)
    deployment = meta.get("deployment")
    if deployment != kept.deployment:
        problems.append(
            f"meta deployment {deployment!r} differs from {kept.deployment!r} of the checkpoint at seq {kept.seq}: "
            "it was edited"
        )
    if deriver.deployment is not None and deriver.deployment[1] != deployment:
        problems.append(
            f"meta deployment {deployment!r} differs from the deployment_bound event seq "
            f"{deriver.deployment[0]} ({deriver.deployment[1]!r}): it was edited"
        )
    problems += _definition_problems(deriver, meta)
    head_signed, head_problems = _head.check(
        conn, public_key, deployment, last_seq, last_hash, value=meta.get(_head.HEAD_SIGNATURE), newest=kept.seq
    )
    problems += head_problems
    derived = len(kept.parts) + len(deriver.rows.keys() - kept.parts.keys())
    rows = conn.execute("SELECT count(*) FROM nodes").fetchone()[0]
    if rows != derived:
        problems.append(f"nodes: {rows} rows, but the events derive {derived} nodes (a row was added or deleted)")
    problems += _node_problems(conn, deriver, only=deriver.touched)
    ok = not problems
    parts = dict(kept.parts)
    for name in deriver.touched:
        parts[name] = _encode_str(name) + ":" + canonical_json(deriver.rows[name])
    report = VerifyReport(
        ok=ok,
        problems=problems,
        events=events,
        sealed=True if ok else None,
        status=VerifyStatus.VERIFIED if ok else VerifyStatus.FAILED,
        signed_seq=last_seq if head_signed else kept.seq,
        start_seq=kept.seq + 1,
        head_seq=last_seq,
        head_signed=head_signed,
    )
    return Verification(report, deriver.rows, (last_seq, last_hash), deployment, kept.digest, deriver.touched, parts)
