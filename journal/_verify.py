"""The integrity check of a journal file: chain, seal and node rows, in one read snapshot."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from journal._chain import ChainChecker, check_seal
from journal._records import VerifyReport

__all__ = ["verify_connection"]

_CHUNK = 2000


def verify_connection(conn: sqlite3.Connection, key: bytes | None, key_path: Path | None) -> VerifyReport:
    """Check every event's hash and link, the seal, and that node rows match their events.

    The caller holds the journal's lock; this opens and ends its own read transaction.
    """
    chain = ChainChecker(contiguous=True)
    last_to_state: dict[str, tuple[int, str]] = {}
    last_seq_of: dict[str, int] = {}
    conn.execute("BEGIN")  # one snapshot: a concurrent writer cannot make rows disagree
    try:
        after = -1 << 62
        while True:
            rows = conn.execute(
                "SELECT seq, at, node, kind, step, attempt, key, from_state, to_state, actor, "
                "payload, prev_hash, hash FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, _CHUNK),
            ).fetchall()
            if not rows:
                break
            for raw in rows:
                row = list(raw)
                try:
                    row[10] = json.loads(row[10])
                except (TypeError, ValueError):
                    pass  # left as text: its hash will not match, which is reported
                chain.feed(row)
                node, to_state = row[2], row[8]
                if node is not None:
                    last_seq_of[node] = row[0]
                    if to_state is not None:
                        last_to_state[node] = (row[0], to_state)
            after = rows[-1][0]
        seal_row = conn.execute("SELECT value FROM meta WHERE name = 'head'").fetchone()
        nodes = conn.execute("SELECT name, state, last_seq FROM nodes ORDER BY rowid").fetchall()
    finally:
        conn.execute("COMMIT")

    problems = chain.finish()
    seal_problems, sealed = check_seal(
        seal_row[0] if seal_row else None, chain.last_seq, chain.last_hash, key
    )
    problems += seal_problems
    problems += _node_problems(nodes, last_to_state, last_seq_of)
    ok = not problems
    if key is None:
        problems.append(
            f"warning: key file {key_path} not found; the chain was checked but the seal "
            "cannot be (restore the key file to check it)"
        )
    return VerifyReport(ok=ok, problems=problems, events=chain.count, sealed=sealed)


def _node_problems(
    nodes: list[tuple[str, str, int | None]],
    last_to_state: dict[str, tuple[int, str]],
    last_seq_of: dict[str, int],
) -> list[str]:
    problems = []
    names = set()
    for name, state, last_seq in nodes:
        names.add(name)
        if name not in last_seq_of:
            problems.append(f"node {name}: has no events (the row was inserted outside the journal)")
            continue
        if name in last_to_state and last_to_state[name][1] != state:
            seq, to_state = last_to_state[name]
            problems.append(
                f"node {name}: state {state!r} disagrees with to_state {to_state!r} "
                f"of its latest event seq {seq} (the row or its events were changed)"
            )
        if last_seq != last_seq_of[name]:
            problems.append(
                f"node {name}: last_seq {last_seq} but its latest event is seq {last_seq_of[name]}"
            )
    for name in sorted(set(last_seq_of) - names):
        problems.append(f"node {name}: has events up to seq {last_seq_of[name]} but no row (deleted)")
    return problems
