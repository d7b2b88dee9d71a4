"""The :class:`Journal`: the one durable record of a run.

Every state change of every node is an event in a hash chain, written in the same
SQLite transaction as the node's row and the chain's seal, so after a crash (kill -9,
power loss) the file holds either all of a commit or none of it.

The write path is plain ``sqlite3`` with statements the module caches prepared; the
head of the chain is cached in memory and re-read only when ``PRAGMA data_version``
says another connection wrote. Reads use keyset pages so no statement stays open
between two writes.
"""

from __future__ import annotations

import json
import operator
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Iterator, Sequence, TextIO

from config.errors import IntegrityError, JournalError
from config.secrets import REDACTOR
from journal import _leases, kinds
from journal._chain import GENESIS, Sealer, canonical_json, check_seal, create_key, event_hash, load_key
from journal._export import write_export
from journal._records import EVENT_COLUMNS, NODE_COLUMNS, Event, NodeRecord, Transition, VerifyReport
from journal._schema import connect, db_files, ensure_schema
from journal._time import normalize_since, utc_now
from journal._verify import verify_connection

__all__ = ["Journal"]

# Node-row columns a Transition may set; the rest belong to the journal (leases, seq).
UPDATABLE = frozenset(
    {"state", "step", "attempt", "gate", "last_error", "failed_from", "maintenance", "maintenance_reason"}
)
_RESERVED_META = frozenset({"head"})
_PAGE = 1000

_EVENT_SELECT = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
_NODE_SELECT = f"SELECT {', '.join(NODE_COLUMNS)} FROM nodes"
_INSERT_EVENT = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
_UPSERT_META = (
    "INSERT INTO meta (name, value) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)


def _update_sql(columns: tuple[str, ...]) -> str:
    assignments = "".join(f"{c} = ?, " for c in columns)
    return f"UPDATE nodes SET {assignments}updated_at = ?, last_seq = ? WHERE name = ?"


# One SQL text per column set, so sqlite3's statement cache keeps each one prepared.
_UPDATE_SQL: dict[tuple[str, ...], str] = {}


def _nullable(field: str, value: Any) -> str | None:
    if value is None or value == "":
        return None  # "" is stored as NULL, so a CSV export's empty cell is unambiguous
    if not isinstance(value, str):
        raise TypeError(f"Transition.{field} must be a str or None (got {type(value).__name__} {value!r})")
    return REDACTOR.scrub_text(value)


class _Prepared:
    """A Transition validated and scrubbed, ready for the write transaction."""

    __slots__ = (
        "node", "kind", "step", "attempt", "key", "from_state", "to_state", "actor",
        "payload", "payload_text", "sql", "values",
    )

    def __init__(self, t: Transition) -> None:
        if not isinstance(t, Transition):
            raise TypeError(f"commit() takes Transition objects (got {type(t).__name__})")
        if not isinstance(t.kind, str) or not t.kind:
            raise ValueError(f"Transition.kind must be a non-empty string (got {t.kind!r})")
        if t.node is not None and (not isinstance(t.node, str) or not t.node):
            raise ValueError(f"Transition.node must be a node name or None (got {t.node!r})")
        if not isinstance(t.actor, str) or not t.actor:
            raise ValueError(f"Transition.actor must be a non-empty string (got {t.actor!r})")
        scrub = REDACTOR.scrub_text
        self.node = t.node
        self.kind = scrub(t.kind)
        self.actor = scrub(t.actor)
        self.step = _nullable("step", t.step)
        self.key = _nullable("key", t.key)
        self.from_state = _nullable("from_state", t.from_state)
        self.to_state = _nullable("to_state", t.to_state)
        self.attempt = t.attempt if type(t.attempt) is int else operator.index(t.attempt)
        if t.payload:
            # Scrub before hashing: the hash must never be a witness of a secret either.
            self.payload_text = canonical_json(REDACTOR.scrub(dict(t.payload)))
            self.payload = json.loads(self.payload_text)  # as it will read back
        else:
            self.payload_text, self.payload = "{}", {}
        self.sql: str | None = None
        self.values: tuple[Any, ...] = ()
        if self.node is not None:
            self._prepare_update(t.update)
        elif t.update:
            raise ValueError(
                f"Transition {t.kind!r}: update needs a node (a run-level event has node=None)"
            )

    def _prepare_update(self, update: Any) -> None:
        values = dict(update) if update else {}
        unknown = set(values) - UPDATABLE
        if unknown:
            raise ValueError(
                f"Transition {self.kind!r} for node {self.node}: cannot update {sorted(unknown)}; "
                f"updatable columns are {sorted(UPDATABLE)}"
            )
        if "state" in values:
            state = values["state"]
            if not isinstance(state, str) or not state:
                raise ValueError(f"Transition {self.kind!r}: update state must be a non-empty str (got {state!r})")
            state = REDACTOR.scrub_text(state)
            if self.to_state is None:
                # The event must say where the node went: verify() checks rows against it.
                self.to_state = state
            elif state != self.to_state:
                raise ValueError(
                    f"Transition {self.kind!r} for node {self.node}: update state {state!r} "
                    f"contradicts to_state {self.to_state!r}; give one of them"
                )
        elif self.to_state is not None:
            values["state"] = self.to_state
        columns = tuple(sorted(values))
        cleaned = []
        for column in columns:
            value = values[column]
            if column == "maintenance":
                value = int(bool(value))
            elif column == "attempt":
                value = operator.index(value)
            elif isinstance(value, str):
                value = REDACTOR.scrub_text(value)
            elif value is not None and column != "state":
                raise TypeError(
                    f"Transition {self.kind!r}: update {column} must be a str or None "
                    f"(got {type(value).__name__})"
                )
            cleaned.append(value)
        sql = _UPDATE_SQL.get(columns)
        if sql is None:
            sql = _UPDATE_SQL[columns] = _update_sql(columns)
        self.sql = sql
        self.values = tuple(cleaned)


class Journal:
    """The SQLite journal of a run: events in a sealed hash chain, node rows, leases.

    Example::

        with Journal.open("run.sqlite") as j:
            j.ensure_nodes([("mgr", "management", "deployed")])
            j.record(node="mgr", kind="step_committed", step="reserve_resources",
                     from_state="deployed", to_state="reserved")
            assert j.verify().ok

    A Journal may be shared by threads (calls are serialised) and by processes (SQLite
    locking; each write is one short ``BEGIN IMMEDIATE`` transaction).
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, key: bytes | None, key_path: Path | None):
        """Use :meth:`open`."""
        self._conn = conn
        self._path = path
        self._key = key
        self._sealer = Sealer(key) if key is not None else None
        self._key_path = key_path
        self._lock = threading.RLock()
        self._head: tuple[int, str] | None = None  # (seq, hash) of the last event, when known
        self._data_version = -1

    # --- opening and closing ---------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, key_path: str | os.PathLike[str] | None = None) -> Journal:
        """Open the journal at ``path``, creating its tables when new.

        Args:
            path: the SQLite file, or ``":memory:"`` for a private in-memory journal
                (its key then lives in memory only).
            key_path: the seal key file; default ``f"{path}.key"``. Created (mode 0600,
                32 random bytes) when missing and the journal has never been sealed; when
                a sealed journal's key is missing the journal opens for reading and
                :meth:`verify`, and writes raise :class:`JournalError`.

        Raises:
            JournalError: the file cannot be opened, is not a journal, or the key is unreadable.
        """
        text = os.fspath(path)
        conn = connect(text)
        try:
            ensure_schema(conn)
            sealed = conn.execute("SELECT 1 FROM meta WHERE name = 'head'").fetchone() is not None
        except sqlite3.Error as exc:
            conn.close()
            raise JournalError(f"journal {text}: is not a usable journal ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        if text == ":memory:" and key_path is None:
            return cls(conn, Path(text), os.urandom(32), None)
        kpath = Path(key_path) if key_path is not None else Path(f"{text}.key")
        try:
            key = load_key(kpath)
            if key is None and not sealed:
                key = create_key(kpath)
        except BaseException:
            conn.close()
            raise
        return cls(conn, Path(text), key, kpath)

    @property
    def path(self) -> Path:
        """The journal's SQLite file."""
        return self._path

    @property
    def key_path(self) -> Path | None:
        """The seal key file (``None`` for an in-memory journal with a memory-only key)."""
        return self._key_path

    def close(self) -> None:
        """Close the connection. Every commit is already durable; this loses nothing."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self._path)!r})"

    # --- transactions ----------------------------------------------------------------

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: all or nothing, sqlite errors as JournalError."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    self._head = None  # what we cached may be from the rolled-back work
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self._path}: {what} failed ({exc}); nothing was written") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read snapshot."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self._path}: read failed ({exc})") from exc

    def _head_for_write(self, conn: sqlite3.Connection) -> tuple[int, str]:
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if self._head is not None and version == self._data_version:
            return self._head
        row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        head = (row[0], row[1]) if row else (0, GENESIS)
        seal = conn.execute("SELECT value FROM meta WHERE name = 'head'").fetchone()
        # Writing on top of an unsealed head would seal rows someone appended by hand,
        # or hide a cut tail: refuse, and let verify() tell what happened.
        problems, _ = check_seal(seal[0] if seal else None, head[0], head[1], self._key)
        if problems:
            raise IntegrityError(
                f"journal {self._path}: its head does not match its seal ({'; '.join(problems)}); "
                "nothing was written. Run `orchestrator journal verify` to see what changed"
            )
        self._head, self._data_version = head, version
        return head

    def _require_sealer(self) -> Sealer:
        if self._sealer is None:
            raise JournalError(
                f"journal {self._path}: key file {self._key_path} is missing, so new events cannot "
                "be sealed; restore the key file (it was created beside the journal)"
            )
        return self._sealer

    def _append(self, conn: sqlite3.Connection, prepared: list[_Prepared], sealer: Sealer) -> list[tuple[Any, ...]]:
        """Append events, update node rows and the seal, inside the caller's transaction."""
        seq, prev = self._head_for_write(conn)
        at = utc_now()
        rows = []
        for p in prepared:
            seq += 1
            digest = event_hash(
                prev, seq, at, p.node, p.kind, p.step, p.attempt, p.key, p.from_state,
                p.to_state, p.actor, p.payload_text,
            )
            rows.append((
                seq, at, p.node, p.kind, p.step, p.attempt, p.key, p.from_state, p.to_state,
                p.actor, p.payload_text, prev, digest,
            ))
            prev = digest
        conn.executemany(_INSERT_EVENT, rows)
        for p, row in zip(prepared, rows):
            if p.sql is not None:
                if conn.execute(p.sql, (*p.values, at, row[0], p.node)).rowcount != 1:
                    raise JournalError(
                        f"commit: node {p.node!r} (event {p.kind!r}) is not in the journal; "
                        "register it with ensure_nodes() first. Nothing was written"
                    )
        conn.execute(_UPSERT_META, ("head", sealer.seal(seq, prev)))
        return rows

    def _commit_prepared(self, prepared: list[_Prepared], what: str) -> list[Event]:
        sealer = self._require_sealer()
        with self._lock:
            # The hot path: the same as _write(), without a generator's overhead.
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    rows = self._append(conn, prepared, sealer)
                    conn.execute("COMMIT")
                except BaseException:
                    self._head = None
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self._path}: {what} failed ({exc}); nothing was written") from exc
            # Only now, after COMMIT returned, is the new head real.
            self._head = (rows[-1][0], rows[-1][12])
        return [
            Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], p.payload, r[11], r[12])
            for r, p in zip(rows, prepared)
        ]

    # --- writing -------------------------------------------------------------------------

    def commit(self, transitions: Sequence[Transition]) -> list[Event]:
        """Make ``transitions`` durable, all in ONE transaction: all or nothing.

        Appends one event per transition to the chain, applies each transition's node-row
        update (and ``updated_at``, ``last_seq``) and moves the seal.

        Returns:
            The events written, in order.

        Raises:
            JournalError: a node is unknown or SQLite failed; nothing was written.
            IntegrityError: the chain's head does not match its seal (tampered); nothing written.
            ValueError, TypeError: a malformed Transition (before anything is written).
        """
        prepared = [_Prepared(t) for t in transitions]
        if not prepared:
            return []
        return self._commit_prepared(prepared, "commit")

    def record(self, **fields: Any) -> Event:
        """Commit one transition: ``record(node=..., kind=..., ...)`` takes Transition's fields."""
        return self.commit([Transition(**fields)])[0]

    def ensure_nodes(self, nodes: Iterable[tuple[str, str, str]]) -> list[str]:
        """Register the nodes not yet in the journal, in one transaction.

        Args:
            nodes: ``(name, role, initial_state)`` triples; known names are left as they are.

        Returns:
            The names added, each journaled as a ``node_registered`` event.
        """
        wanted: dict[str, tuple[str, str]] = {}
        for item in nodes:
            name, role, state = item
            for field, value in (("name", name), ("role", role), ("initial_state", state)):
                if not isinstance(value, str) or not value:
                    raise ValueError(f"ensure_nodes: {field} of {item!r} must be a non-empty string")
            wanted.setdefault(name, (role, state))
        if not wanted:
            return []
        prepared = {
            name: _Prepared(Transition(node=name, kind=kinds.NODE_REGISTERED, to_state=state,
                                       payload={"role": role}))
            for name, (role, state) in wanted.items()
        }
        with self._lock:
            with self._write("ensure_nodes") as conn:
                known = {row[0] for row in conn.execute("SELECT name FROM nodes")}
                added = [name for name in wanted if name not in known]
                if not added:
                    return []
                sealer = self._require_sealer()
                conn.executemany(
                    "INSERT INTO nodes (name, role, state, attempt, maintenance) VALUES (?, ?, ?, 0, 0)",
                    [(name, *wanted[name]) for name in added],
                )
                rows = self._append(conn, [prepared[name] for name in added], sealer)
            self._head = (rows[-1][0], rows[-1][12])
        return added

    def get_meta(self, name: str) -> str | None:
        """A meta value (``definition_hash``, ``deployment``, ...), ``None`` when unset."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        """Set a meta value. ``head`` is the seal and is written by commits only."""
        if name in _RESERVED_META:
            raise ValueError(f"set_meta: {name!r} is the journal's seal and cannot be set by hand")
        if not isinstance(value, str):
            raise TypeError(f"set_meta: value of {name!r} must be a str (got {type(value).__name__})")
        with self._write("set_meta") as conn:
            conn.execute(_UPSERT_META, (name, value))

    # --- reading -----------------------------------------------------------------------

    def nodes(self) -> list[NodeRecord]:
        """Every node, in the order they were registered."""
        with self._lock:
            rows = self._conn.execute(f"{_NODE_SELECT} ORDER BY rowid").fetchall()
        return [NodeRecord.from_row(row) for row in rows]

    def node(self, name: str) -> NodeRecord | None:
        """One node's row, ``None`` when unknown."""
        with self._lock:
            row = self._conn.execute(f"{_NODE_SELECT} WHERE name = ?", (name,)).fetchone()
        return NodeRecord.from_row(row) if row else None

    def events(
        self, *, node: str | None = None, since: Any = None, kinds: Iterable[str] | None = None
    ) -> Iterator[Event]:
        """Events in seq order, optionally of one node, at or after ``since``, of ``kinds``.

        Args:
            since: a datetime (naive = UTC) or an ISO-8601 string.
        """
        where, params = self._filter(node, normalize_since(since), kinds)
        return self._iter_events(where, params)

    @staticmethod
    def _filter(node: str | None, since: str | None, kinds: Iterable[str] | None) -> tuple[str, list[Any]]:
        clauses, params = ["seq > ?"], [0]
        if node is not None:
            clauses.append("node = ?")
            params.append(node)
        if since is not None:
            clauses.append("at >= ?")
            params.append(since)
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else list(kinds)
            clauses.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        return " AND ".join(clauses), params

    def _iter_events(self, where: str, params: list[Any]) -> Iterator[Event]:
        # Keyset pages (seq > last seen): no statement stays open across a yield, so the
        # caller may commit while iterating.
        sql = f"{_EVENT_SELECT} WHERE {where} ORDER BY seq LIMIT {_PAGE}"
        while True:
            with self._lock:
                rows = self._conn.execute(sql, params).fetchall()
            for row in rows:
                yield Event.from_row(row)
            if len(rows) < _PAGE:
                return
            params = [rows[-1][0], *params[1:]]

    def last_event(self, node: str | None, kind: str | None = None) -> Event | None:
        """The newest event of ``node`` (``None``: run-level events), optionally of ``kind``."""
        sql = f"{_EVENT_SELECT} WHERE node IS ?"
        params: list[Any] = [node]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        with self._lock:
            row = self._conn.execute(sql + " ORDER BY seq DESC LIMIT 1", params).fetchone()
        return Event.from_row(row) if row else None

    def statistics(self) -> dict[str, Any]:
        """Counts and sizes: ``events``, ``last_seq``, ``nodes``, ``nodes_by_state``, ``file_bytes``."""
        with self._read() as conn:
            events, last_seq = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone()
            by_state = dict(conn.execute("SELECT state, count(*) FROM nodes GROUP BY state ORDER BY state"))
        files = db_files(self._path) if str(self._path) != ":memory:" else []
        return {
            "path": str(self._path),
            "events": events,
            "last_seq": last_seq,
            "nodes": sum(by_state.values()),
            "nodes_by_state": by_state,
            "file_bytes": sum(f.stat().st_size for f in files),
        }

    # --- leases ---------------------------------------------------------------------------

    def acquire_leases(self, nodes: Sequence[str], *, owner: str, pid: int, timeout_s: float = 60.0) -> None:
        """Take the leases of ``nodes`` for ``owner``, all or none, in one transaction.

        A lease held by another owner is taken over when stale: its process is dead on
        this host, or its heartbeat is older than ``timeout_s``. Re-acquiring one's own
        lease refreshes its heartbeat.

        Args:
            owner: ``"host:pid:uuid"`` (see :func:`journal.new_lease_owner`).
            pid: the process that does the work.

        Raises:
            ResourceLocked: a node is held by another live owner (names pid and since).
            JournalError: a node is unknown.
        """
        with self._write("acquire_leases") as conn:
            _leases.acquire(conn, nodes, owner, pid, timeout_s)

    def heartbeat(self, owner: str) -> None:
        """Refresh the heartbeat of every lease ``owner`` holds (one UPDATE)."""
        with self._write("heartbeat") as conn:
            conn.execute("UPDATE nodes SET heartbeat = ? WHERE lease_owner = ?", (utc_now(), owner))

    def release_leases(self, owner: str) -> None:
        """Release every lease ``owner`` holds."""
        with self._write("release_leases") as conn:
            conn.execute(
                "UPDATE nodes SET lease_owner = NULL, lease_pid = NULL, lease_since = NULL, "
                "heartbeat = NULL WHERE lease_owner = ?",
                (owner,),
            )

    def clear_stale_leases(self) -> list[str]:
        """Release leases whose process is dead on this host; returns the nodes cleared."""
        with self._write("clear_stale_leases") as conn:
            return _leases.clear_stale(conn)

    # --- integrity and export --------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Check the whole chain, the seal and the node rows (see :class:`VerifyReport`)."""
        with self._lock:
            try:
                return verify_connection(self._conn, self._key, self._key_path)
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self._path}: cannot be read for verify ({exc})") from exc

    def export(
        self, out: TextIO, *, fmt: str = "jsonl", node: str | None = None, since: Any = None
    ) -> int:
        """Write events (optionally one node's, at or after ``since``) and an export seal.

        Args:
            out: a text stream (for CSV, a file opened with ``newline=""``, as for ``csv``).
            fmt: ``"jsonl"`` (one JSON object per line) or ``"csv"``.

        Returns:
            The number of events written (the seal line not counted).
        """
        since_text = normalize_since(since)
        where, params = self._filter(node, since_text, None)
        sql = f"{_EVENT_SELECT} WHERE {where} ORDER BY seq LIMIT {_PAGE}"

        def pages() -> Iterator[Event]:
            page_params = params
            while True:
                rows = conn.execute(sql, page_params).fetchall()
                for row in rows:
                    yield Event.from_row(row)
                if len(rows) < _PAGE:
                    return
                page_params = [rows[-1][0], *params[1:]]

        with self._read() as conn:  # one snapshot: the seal covers exactly what was read
            return write_export(
                pages(), out, fmt=fmt, filter_={"node": node, "since": since_text},
                key=self._key, journal=str(self._path.resolve()) if str(self._path) != ":memory:" else ":memory:",
            )
