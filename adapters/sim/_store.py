"""The simulated world's SQLite schema and its in-memory field indexes.

Plain helpers of :mod:`adapters.sim.world`, kept apart so the world stays one job: the
store, latency, faults and effect log shared by the twins.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "SCHEMA",
    "Effect",
    "as_stored",
    "connect",
    "digest",
    "index_add",
    "index_discard",
    "hashable",
    "reload",
    "write",
]


class Effect(NamedTuple):
    """One change applied to the world, recorded against the node it concerns."""

    node: str
    kind: str  # vm_import, reservation_set, bios_lock, power_on, api_create, ...
    detail: str = ""


def digest(value: str) -> str:
    """How the world keeps a password or key it must be able to compare, never the value.

    Unsalted SHA-256 is enough here: this is a simulation's own file, and the point is only
    that no secret value is ever written to it.
    """
    return hashlib.sha256(value.encode()).hexdigest()


# A rowid table, not WITHOUT ROWID: most values are 0.5-2 KB (VMs, worker_vms, certificates), past what an index
# b-tree's page keeps inline (about a quarter page), so WITHOUT ROWID put each on an overflow page of its own and
# every commit rewrote those pages (issue #11: a 1000-node world 16 MB -> 9 MB, its 3,100 commits ~40% less CPU).
# The effects' seq is the rowid without AUTOINCREMENT: rows are never deleted, so it grows all the same, and no
# sqlite_sequence page is written by every commit. A world file made before keeps its tables: the SQL is the same.
SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    system TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,          -- JSON
    PRIMARY KEY (system, key)
);
CREATE TABLE IF NOT EXISTS effects (
    seq    INTEGER PRIMARY KEY,
    at     TEXT NOT NULL,          -- UTC, ISO 8601
    node   TEXT NOT NULL,
    kind   TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""


def connect(path: Path, *, shared: bool) -> sqlite3.Connection:
    """The world file opened (created if new) with its schema; raises ``sqlite3.Error`` (the caller says why)."""
    # Shared: the other process's transactions are short, but a write must wait them out.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10 if shared else 0.25)
    try:
        # WAL + synchronous=OFF: a committed transaction survives kill -9 of this process
        # (it is in the WAL file, replayed on open); nothing is fsynced, not even the WAL's
        # checkpoints into the file (issue #11: ~0.15 s of fsync waits in the event loop's thread
        # of a 1000-node simulation). A power loss may lose or corrupt the world file: that is not
        # what the simulated world simulates, the journal does that (synchronous=FULL).
        # One owner at a time: the cache would go stale under a second writer. (Set
        # before WAL so that no shared-memory index is used at all.)
        if not shared:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-256")  # 256 KiB: values are read by primary key, hot ones cached above
        # A checkpoint every 16 MiB of WAL, not 4: each one fsyncs the WAL and the file, in the event loop's
        # thread (issue #11: 5,000 one-row transactions 1.4 -> 1.0 s wall here). The WAL is reset after each.
        conn.execute("PRAGMA wal_autocheckpoint=4000")
        conn.executescript(SCHEMA)  # a write: takes the exclusive lock now, and keeps it
    except sqlite3.Error:
        conn.close()
        raise
    return conn


# An upsert, not INSERT OR REPLACE: that deletes the row and inserts it under a new rowid (index and table both
# rewritten); this updates the value where it stands.
_PUT = (
    "INSERT INTO kv (system, key, value) VALUES (?, ?, ?) "
    "ON CONFLICT (system, key) DO UPDATE SET value = excluded.value"
)


def write(conn: sqlite3.Connection, pending: dict[tuple[str, str], str | None], effects: Sequence[Effect]) -> None:
    """One transaction: the pending values (``None`` deletes) and the effects' records, all or nothing."""
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    puts = [(s, k, v) for (s, k), v in pending.items() if v is not None]
    deletes = [(s, k) for (s, k), v in pending.items() if v is None]
    conn.execute("BEGIN")
    try:
        if puts:
            conn.executemany(_PUT, puts)
        if deletes:
            conn.executemany("DELETE FROM kv WHERE system = ? AND key = ?", deletes)
        if effects:
            conn.executemany(
                "INSERT INTO effects (at, node, kind, detail) VALUES (?, ?, ?, ?)",
                [(at, e.node, e.kind, e.detail) for e in effects],
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# An index maps a field's value to the one key that has it (a str: natural keys are
# unique, and a set per value would cost ~200 bytes per node) or to a set of keys.
def state_sha256(entries: Iterable[tuple[str, str, Any]]) -> str:
    """SHA-256 of ``(system, key, value)`` entries, one JSON line each, in the order given."""
    sha = hashlib.sha256()
    for entry in entries:
        sha.update(json.dumps(list(entry), sort_keys=True).encode() + b"\n")
    return sha.hexdigest()


def effects_summary(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """``{node: {kind: count}}`` of the effects table."""
    summary: dict[str, dict[str, int]] = {}
    rows = conn.execute("SELECT node, kind, count(*) FROM effects GROUP BY node, kind ORDER BY node, kind")
    for node, kind, count in rows:
        summary.setdefault(node, {})[sys.intern(kind)] = count  # one string per kind, not per row (#11)
    return summary


def effect_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every effect in order: ``seq``, ``at``, ``node``, ``kind``, ``detail``."""
    rows = conn.execute("SELECT seq, at, node, kind, detail FROM effects ORDER BY seq")
    return [dict(zip(("seq", "at", "node", "kind", "detail"), row, strict=True)) for row in rows]


def index_add(index: dict[Any, Any], value: Any, key: str) -> None:
    found = index.get(value)
    if found is None or found == key:
        index[value] = key
    elif isinstance(found, str):
        index[value] = {found, key}
    else:
        found.add(key)


def index_discard(index: dict[Any, Any], value: Any, key: str) -> None:
    found = index.get(value)
    if found == key:
        del index[value]
    elif isinstance(found, set):
        found.discard(key)
        if len(found) == 1:
            index[value] = next(iter(found))


_SCALARS = frozenset({str, int, float, bool, type(None)})


class _NotPlain(Exception):
    pass


def as_stored(value: Any, text: str) -> Any:
    """``json.loads(text)`` where ``text`` is ``value`` encoded: what a read of the stored value returns.

    A value made of exact dicts with str keys, lists and JSON scalars is copied instead (no share with the
    caller's object, equal to the decoded text): faster than decoding again (issue #11: 24,000 writes per
    1000 nodes). Anything else (a tuple, an int key, a str subclass...) changes in JSON, so it is decoded.
    """
    try:
        return _plain_copy(value)
    except _NotPlain:
        return json.loads(text)


def _plain_copy(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            out[key] = item if type(item) in _SCALARS else _plain_copy(item)
        return out
    if kind is list:
        return [item if type(item) in _SCALARS else _plain_copy(item) for item in value]
    if kind in _SCALARS:
        return value
    raise _NotPlain


def hashable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def reload(
    conn: sqlite3.Connection, pending: dict[tuple[str, str], str | None]
) -> tuple[defaultdict[str, set[str]], OrderedDict[tuple[str, str], Any]]:
    """A shared world's keys read again, and its value cache holding only this process's uncommitted changes."""
    keys: defaultdict[str, set[str]] = defaultdict(set)
    for system, key in conn.execute("SELECT system, key FROM kv"):
        keys[system].add(key)
    for (system, key), text in pending.items():
        if text is None:
            keys[system].discard(key)
        else:
            keys[system].add(key)
    return keys, OrderedDict(((s, k), json.loads(t)) for (s, k), t in pending.items() if t is not None)
