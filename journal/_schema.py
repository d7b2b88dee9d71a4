"""The journal's SQLite file: connection settings and tables.

Every connection runs in WAL mode with ``synchronous=FULL``: a commit is on disk when
``COMMIT`` returns, which is what lets a run killed at any instant resume at its last
committed state. Tables are created with sqlite-utils (STRICT, so a wrong type is an
error, not a silent conversion).
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path

from config.errors import JournalError
from journal._files import create_private

__all__ = ["SCHEMA_VERSION", "TABLES", "connect", "ensure_schema", "db_files"]

SCHEMA_VERSION = "2"  # 2: events record the node columns they set; signed checkpoints
TABLES = frozenset({"events", "nodes", "meta", "checkpoints"})
# A writer holds the lock for one short transaction; wait this long for it, then fail.
BUSY_TIMEOUT_MS = 10_000

_EVENTS = {
    "seq": int,
    "at": str,
    "node": str,
    "kind": str,
    "step": str,
    "attempt": int,
    "key": str,
    "from_state": str,
    "to_state": str,
    "actor": str,
    "payload": str,
    "prev_hash": str,
    "hash": str,
    "sets": str,
}
_NODES = {
    "name": str,
    "role": str,
    "state": str,
    "step": str,
    "attempt": int,
    "gate": str,
    "last_error": str,
    "failed_from": str,
    "maintenance": int,
    "maintenance_reason": str,
    "lease_owner": str,
    "lease_pid": int,
    "lease_since": str,
    "heartbeat": str,
    "updated_at": str,
    "last_seq": int,
}
_CHECKPOINTS = {
    "id": int,
    "seq": int,
    "at": str,
    "deployment": str,
    "head": str,
    "nodes": str,
    "key_id": str,
    "signature": str,
    "snapshot": str,
}


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open ``path`` with the journal's settings; ``:memory:`` gives a private database.

    A new file is created mode 0600 (its WAL and shm files take the same mode). The file's
    tables are checked (:func:`check_schema`) before anything is written to it, so a
    database that is not a journal is refused unchanged. ``readonly`` opens an existing
    journal with SQLite's read-only mode: nothing is created or written.

    Raises:
        JournalError: cannot be opened, or not a journal.
    """
    memory = path == ":memory:"
    if readonly and memory:
        raise JournalError("journal :memory: cannot be opened read-only (it would be empty)")
    if readonly and not Path(path).is_file():
        raise JournalError(f"journal {path}: does not exist (a read-only command never creates one)")
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{urllib.parse.quote(path)}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
        else:
            if not memory:
                create_private(Path(path))
            # isolation_level=None: the journal issues BEGIN/COMMIT itself, so that every
            # write takes the lock up front (BEGIN IMMEDIATE) and nothing commits implicitly.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: cannot be opened ({exc})") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        fresh = check_schema(conn, path)
        if fresh and readonly:
            raise JournalError(f"journal {path}: is empty, not a journal (a read-only command never creates one)")
        if not memory and not readonly:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(
                    f"journal {path}: cannot switch to WAL mode (got {mode!r}); put the journal on a local filesystem"
                )
        if not readonly:
            conn.execute("PRAGMA synchronous=FULL")
        # Appends touch the last pages only: a 256 KiB page cache (default 2 MiB) is plenty and
        # keeps the orchestrator's fixed memory small.
        conn.execute("PRAGMA cache_size=-256")
        if fresh:
            ensure_schema(conn)
        return conn
    except sqlite3.Error as exc:
        conn.close()
        raise JournalError(f"journal {path}: is not a usable journal ({exc})") from exc
    except BaseException:
        conn.close()
        raise


def check_schema(conn: sqlite3.Connection, path: str) -> bool:
    """Whether the database is empty (a new journal); refuses one that is not a journal.

    Raises:
        JournalError: the file holds other tables, or a journal of another schema version.
    """
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return True
    version = None
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        version = row[0] if row else None
    if version is not None and version != SCHEMA_VERSION and {"events", "nodes"} <= tables:
        raise JournalError(
            f"journal {path}: has schema version {version}, this orchestrator writes version "
            f"{SCHEMA_VERSION}; finish it with the orchestrator version that started it"
        )
    if not TABLES <= tables or version != SCHEMA_VERSION:
        raise JournalError(
            f"journal {path}: is an SQLite file but not a journal (tables: {', '.join(sorted(tables))}); "
            "refusing to use it. Give the path of a journal, or a new file"
        )
    return False


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables and indexes that are missing (a no-op on an existing journal)."""
    existing = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if TABLES <= existing:
        return
    import sqlite_utils  # only to create a journal: 40 ms of every read-only command's start otherwise (#11)

    db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        db.table("events").create(
            _EVENTS,
            pk="seq",
            not_null={"seq", "at", "kind", "attempt", "actor", "payload", "prev_hash", "hash", "sets"},
            if_not_exists=True,
            strict=True,
        )
        # last_event(node) and events(node=...) read one node's events newest first.
        db.table("events").create_index(["node", "seq"], index_name="events_node_seq", if_not_exists=True)
        db.table("nodes").create(
            _NODES,
            pk="name",
            not_null={"name", "role", "state", "attempt", "maintenance"},
            defaults={"attempt": 0, "maintenance": 0},
            if_not_exists=True,
            strict=True,
        )
        db.table("meta").create({"name": str, "value": str}, pk="name", if_not_exists=True, strict=True)
        db.table("checkpoints").create(
            _CHECKPOINTS,
            pk="id",
            not_null=set(_CHECKPOINTS) - {"id", "deployment", "snapshot"},
            if_not_exists=True,
            strict=True,
        )
        conn.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def db_files(path: Path) -> list[Path]:
    """The journal file and its WAL/shm companions that exist."""
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
