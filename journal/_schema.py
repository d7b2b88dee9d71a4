"""The journal's SQLite file: connection settings and tables.

Every connection runs in WAL mode with ``synchronous=FULL``: a commit is on disk when
``COMMIT`` returns, which is what lets a run killed at any instant resume at its last
committed state. Tables are created with sqlite-utils (STRICT, so a wrong type is an
error, not a silent conversion).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from config.errors import JournalError

__all__ = ["SCHEMA_VERSION", "connect", "ensure_schema", "db_files"]

SCHEMA_VERSION = "1"
# A writer holds the lock for one short transaction; wait this long for it, then fail.
BUSY_TIMEOUT_MS = 10_000

_EVENTS = {
    "seq": int, "at": str, "node": str, "kind": str, "step": str, "attempt": int,
    "key": str, "from_state": str, "to_state": str, "actor": str, "payload": str,
    "prev_hash": str, "hash": str,
}
_NODES = {
    "name": str, "role": str, "state": str, "step": str, "attempt": int, "gate": str,
    "last_error": str, "failed_from": str, "maintenance": int, "maintenance_reason": str,
    "lease_owner": str, "lease_pid": int, "lease_since": str, "heartbeat": str,
    "updated_at": str, "last_seq": int,
}


def connect(path: str) -> sqlite3.Connection:
    """Open ``path`` with the journal's settings; ``:memory:`` gives a private database."""
    try:
        # isolation_level=None: the journal issues BEGIN/COMMIT itself, so that every
        # write takes the lock up front (BEGIN IMMEDIATE) and nothing commits implicitly.
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        if path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(
                    f"journal {path}: cannot switch to WAL mode (got {mode!r}); "
                    "put the journal on a local filesystem"
                )
        conn.execute("PRAGMA synchronous=FULL")
        # Appends touch the last pages only: a 256 KiB page cache (default 2 MiB) is plenty and
        # keeps the orchestrator's fixed memory small.
        conn.execute("PRAGMA cache_size=-256")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: cannot be opened ({exc})") from exc


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables and indexes that are missing (a no-op on an existing journal)."""
    existing = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if {"events", "nodes", "meta"} <= existing:
        return
    db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        db["events"].create(
            _EVENTS, pk="seq", not_null={"seq", "at", "kind", "attempt", "actor", "payload",
                                         "prev_hash", "hash"},
            if_not_exists=True, strict=True,
        )
        # last_event(node) and events(node=...) read one node's events newest first.
        db["events"].create_index(["node", "seq"], index_name="events_node_seq", if_not_exists=True)
        db["nodes"].create(
            _NODES, pk="name", not_null={"name", "role", "state", "attempt", "maintenance"},
            defaults={"attempt": 0, "maintenance": 0}, if_not_exists=True, strict=True,
        )
        db["meta"].create({"name": str, "value": str}, pk="name", if_not_exists=True, strict=True)
        conn.execute(
            "INSERT OR IGNORE INTO meta(name, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def db_files(path: Path) -> list[Path]:
    """The journal file and its WAL/shm companions that exist."""
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
