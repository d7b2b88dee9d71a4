"""Helpers shared by the journal tests (a uniquely named module, not conftest, so that
other test folders' conftest files cannot shadow it)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from journal import Journal  # noqa: E402
from journal._chain import GENESIS, event_hash, head_record  # noqa: E402

NODES = [
    ("mgr", "management", "deployed"),
    ("conf-1", "conferencing", "deployed"),
    ("conf-2", "conferencing", "deployed"),
]


def walk(j: Journal, node: str, states: list[str], step: str = "work") -> None:
    """Move ``node`` through ``states``, one committed step each."""
    current = j.node(node)
    assert current is not None
    previous = current.state
    for state in states:
        j.record(
            node=node,
            kind="step_committed",
            step=step,
            attempt=1,
            key=f"{node}/{state}",
            from_state=previous,
            to_state=state,
            payload={"observed": {"state": state}},
        )
        previous = state


def spec_hash(prev_hash: str, event: dict[str, Any]) -> str:
    """The chain hash computed from the written spec, independently of journal._chain."""
    content = {
        name: event.get(name, {})
        for name in (
            "seq",
            "at",
            "node",
            "kind",
            "step",
            "attempt",
            "key",
            "from_state",
            "to_state",
            "actor",
            "payload",
            "sets",
        )
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()


def rechain(db: sqlite3.Connection) -> None:
    """Recompute every hash and link and move the head record, as anyone who reads the spec can (an attacker's
    rewrite: the chain alone then holds, only a signature or a kept copy catches it)."""
    prev = GENESIS
    rows = db.execute(
        "SELECT seq, at, node, kind, step, attempt, key, from_state, to_state, actor, payload, sets "
        "FROM events ORDER BY seq"
    ).fetchall()
    for row in rows:
        digest = event_hash(prev, *row)
        db.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, row[0]))
        prev = digest
    db.execute("UPDATE meta SET value = ? WHERE name = 'head'", (head_record(rows[-1][0], prev),))


def append_forged_approval(db: sqlite3.Connection, node: str, payload: str = "{}") -> int:
    """An approval of the security wizard appended by hand after the head, as an attacker with write access would:
    hash, link, head record and node row all recomputed. Returns its seq."""
    return append_forged_event(db, "gate_opened", "security_wizard", "alice", payload, node=node)


def append_forged_event(
    db: sqlite3.Connection, kind: str, step: str | None, actor: str, payload: str, *, node: str | None
) -> int:
    """An event appended by hand after the head, as anyone who reads the spec can: hash, link, head record and (for
    a node's event) its node row all recomputed. Returns its seq."""
    seq, last, at = db.execute("SELECT seq, hash, at FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    row = (seq + 1, at, node, kind, step, 0, None, None, None, actor, payload, "{}")
    digest = event_hash(last, *row)
    db.execute(
        "INSERT INTO events (seq, at, node, kind, step, attempt, key, from_state, to_state, actor, payload, sets, "
        "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*row, last, digest),
    )
    db.execute("UPDATE meta SET value = ? WHERE name = 'head'", (head_record(seq + 1, digest),))
    if node:
        db.execute("UPDATE nodes SET last_seq = ?, updated_at = ? WHERE name = ?", (seq + 1, at, node))
    return int(seq) + 1
