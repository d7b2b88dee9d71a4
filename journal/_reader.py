"""The reading side of the :class:`Journal`: node rows, events, meta, statistics, exports.

Reads use keyset pages, so no statement stays open between two writes and a caller may
commit while iterating.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from config.errors import JournalError
from journal._derive import NodeRecordFields, derive_nodes
from journal._export import write_export
from journal._files import atomic_text
from journal._head import newest_checkpoint
from journal._prepare import EVENT_SELECT, NODE_SELECT
from journal._records import Event, NodeRecord
from journal._schema import db_files
from journal._signing import Signer
from journal._time import normalize_since
from journal._watch import LatestKinds

__all__ = ["JournalReader"]

_PAGE = 200  # rows per query: a page of decoded events is ~2 KB each (issue #11: 1000 were a 2 MB peak)


_ABSENT_KEPT = 8192  # (node, kind) pairs remembered as having no event (see last_event)


class JournalReader:
    """Read access to a journal's connection (the base of :class:`Journal`)."""

    _conn: sqlite3.Connection
    _path: Path
    _lock: threading.RLock
    _absent: set[tuple[str | None, str | None]]  # see _absent_since_last_write
    _absent_version: int
    _watches: dict[tuple[str, ...], LatestKinds]  # see latest_kind

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read snapshot."""
        with self._lock:
            conn = self._conn
            if conn.in_transaction:  # inside this connection's batch or hold: its transaction is the snapshot
                yield conn
                return
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self._path}: read failed ({exc})") from exc

    def get_meta(self, name: str) -> str | None:
        """A meta value (``definition_hash``, ``deployment``, ...), ``None`` when unset."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def newest_checkpoint_seq(self) -> int:
        """The seq of the newest checkpoint in the database (0: none); not proof by itself."""
        with self._lock:
            return newest_checkpoint(self._conn)

    # --- reading -----------------------------------------------------------------------

    def nodes(self) -> list[NodeRecord]:
        """Every node, in the order they were registered."""
        with self._lock:
            rows = self._conn.execute(f"{NODE_SELECT} ORDER BY rowid").fetchall()
        return [NodeRecord.from_row(row) for row in rows]

    def node_states(self) -> dict[str, str]:
        """Every node's state by name: :meth:`nodes` without building a record of each (a run's recap)."""
        with self._lock:
            return dict(self._conn.execute("SELECT name, state FROM nodes").fetchall())

    def node(self, name: str) -> NodeRecord | None:
        """One node's row, ``None`` when unknown."""
        with self._lock:
            row = self._conn.execute(f"{NODE_SELECT} WHERE name = ?", (name,)).fetchone()
        return NodeRecord.from_row(row) if row else None

    def events(
        self,
        *,
        node: str | None = None,
        since: Any = None,
        kinds: Iterable[str] | None = None,
        payload_key: str | None = None,
    ) -> Iterator[Event]:
        """Events in seq order, optionally of one node, at or after ``since``, of ``kinds``.

        Args:
            since: a datetime (naive = UTC) or an ISO-8601 string.
            payload_key: only events whose payload has this top-level key, picked by SQLite before any row is
                decoded (a rare key among thousands of events costs one scan in C).
        """
        where, params = self._filter(node, normalize_since(since), kinds)
        if payload_key is not None:
            if '"' in payload_key:
                raise ValueError(f"payload_key {payload_key!r}: a key without double quotes")
            where += " AND json_extract(payload, ?) IS NOT NULL"
            params.append(f'$."{payload_key}"')
        return self._iter_events(where, params)

    @staticmethod
    def _filter(node: str | None, since: str | None, kinds: Iterable[str] | None) -> tuple[str, list[Any]]:
        clauses: list[str] = ["seq > ?"]
        params: list[Any] = [0]
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
        sql = f"{EVENT_SELECT} WHERE {where} ORDER BY seq LIMIT {_PAGE}"
        while True:
            with self._lock:
                rows = self._conn.execute(sql, params).fetchall()
            for row in rows:
                yield Event.from_row(row)
            if len(rows) < _PAGE:
                return
            params = [rows[-1][0], *params[1:]]

    def derived_nodes(self) -> dict[str, NodeRecordFields]:
        """Every node's row columns as derived from the events alone (see :func:`journal.derive_nodes`)."""
        return derive_nodes(self.events())

    def last_event(self, node: str | None, kind: str | None = None) -> Event | None:
        """The newest event of ``node`` (``None``: run-level events), optionally of ``kind``."""
        sql = f"{EVENT_SELECT} WHERE node IS ?"
        params: list[Any] = [node]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        with self._lock:
            absent = self._absent_since_last_write()
            if (node, kind) in absent:
                return None
            row = self._conn.execute(sql + " ORDER BY seq DESC LIMIT 1", params).fetchone()
            if row is None:
                if len(absent) >= _ABSENT_KEPT:
                    absent.clear()  # bounded memory; forgetting only costs a query
                absent.add((node, kind))
        return Event.from_row(row) if row else None

    def tallies(
        self, after: int, kinds: tuple[str, ...] | None = None
    ) -> Iterator[tuple[int, str, str, str | None, str, bool]]:
        """``(seq, node, kind, step, at, changed)`` of every node's event after seq ``after`` (of ``kinds``: all when
        None), in seq order.

        ``changed``: the payload's ``changed`` list is not empty. What a run's recap counts, read by SQLite
        without decoding every payload (issue #11: 33,000 events at the end of a 1000-node simulation).
        """
        only = f" AND kind IN ({', '.join('?' * len(kinds))})" if kinds else ""
        sql = (
            "SELECT seq, node, kind, step, at, coalesce(json_array_length(payload, '$.changed'), 0) > 0 "
            f"FROM events WHERE seq > ? AND node IS NOT NULL{only} ORDER BY seq LIMIT {_PAGE}"
        )
        while True:
            with self._lock:
                rows = self._conn.execute(sql, (after, *(kinds or ()))).fetchall()
            for seq, node, kind, step, at, changed in rows:
                yield seq, node, kind, step, at, bool(changed)
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def spans(self, after: int) -> dict[str, tuple[str, str]]:
        """Each node's ``(at of its first event, at of its last)`` after seq ``after``: a run's recap's durations,
        grouped by SQLite (the row of the min or max seq gives its bare ``at`` column)."""
        sql = "SELECT node, {}(seq), at FROM events WHERE seq > ? AND node IS NOT NULL GROUP BY node"
        with self._lock:
            first = {node: at for node, _, at in self._conn.execute(sql.format("min"), (after,))}
            last = {node: at for node, _, at in self._conn.execute(sql.format("max"), (after,))}
        return {node: (at, last[node]) for node, at in first.items()}

    def latest_kind(self, node: str, kinds: tuple[str, ...], *, max_age_s: float = 0.0) -> str | None:
        """The kind of ``node``'s newest event among ``kinds`` (None: none), as fresh as a query.

        Answered from memory while no other connection committed (:mod:`journal._watch`): the engine asks
        before every step whether an operator put the node in maintenance (issue #7, #11). ``max_age_s`` > 0:
        another connection's commits of the last ``max_age_s`` seconds may be missed (this connection's never are),
        for one ``PRAGMA data_version`` per that time instead of one per question.
        """
        with self._lock:
            watch = self._watch(kinds)
            try:
                return watch.kind(self._conn, node, max_age_s)
            except sqlite3.Error as exc:
                watch.close()
                raise JournalError(f"journal {self._path}: read failed ({exc})") from exc

    def watch_kinds(self, kinds: tuple[str, ...]) -> None:
        """Start answering :meth:`latest_kind` of ``kinds`` now, before a :meth:`hold`: a watch first read inside
        this connection's open transaction reads at every question until it ends (it cannot know whether the
        transaction appended events of those kinds before the watch existed, and may roll them back)."""
        self.latest_kind("", kinds)

    def _watch(self, kinds: tuple[str, ...]) -> LatestKinds:
        watch = self._watches.get(kinds)
        if watch is None:
            watch = self._watches[kinds] = LatestKinds(kinds)
        return watch

    def _absent_since_last_write(self) -> set[tuple[str | None, str | None]]:
        """The ``(node, kind)`` pairs known to have no event, valid while no other connection wrote.

        :meth:`last_event` is mostly asked for events a node does not have (a failure, a drift): "none"
        is kept (issue #11; the per-step maintenance question is :meth:`latest_kind`'s watch now).
        ``PRAGMA data_version`` changes when another connection commits: then the set is dropped;
        this connection's own commits drop the pairs they add (:meth:`_appended`).
        """
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._absent_version:
            self._absent.clear()
            self._absent_version = version
        return self._absent

    def _appended(self, events: Iterable[tuple[str | None, str]]) -> None:
        """This connection appends events of these ``(node, kind)``: they are no longer absent, and the watches of
        their kinds read again (called before COMMIT: a rollback only costs a query)."""
        absent, watches = self._absent, self._watches.values()
        if absent or watches:
            for node, kind in events:
                if absent:
                    absent.discard((node, kind))
                    absent.discard((node, None))
                for watch in watches:
                    watch.appended(kind)

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

    def export(
        self,
        out: TextIO,
        *,
        fmt: str = "jsonl",
        node: str | None = None,
        since: Any = None,
        signer: Signer | None = None,
    ) -> int:
        """Write events (optionally one node's, at or after ``since``) and an export seal.

        Args:
            out: a text stream (for CSV, a file opened with ``newline=""``, as for ``csv``).
            fmt: ``"jsonl"`` (one JSON object per line) or ``"csv"``.
            signer: sign the export seal (Ed25519), so :func:`verify_export` with the
                public key proves the file; unsigned exports verify as ``UNVERIFIED``.

        Returns:
            The number of events written (the seal line not counted).
        """
        since_text = normalize_since(since)
        where, params = self._filter(node, since_text, None)
        sql = f"{EVENT_SELECT} WHERE {where} ORDER BY seq LIMIT {_PAGE}"

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
            deployment = conn.execute("SELECT value FROM meta WHERE name = 'deployment'").fetchone()
            return write_export(
                pages(),
                out,
                fmt=fmt,
                filter_={"node": node, "since": since_text},
                signer=signer,
                journal=str(self._path.resolve()) if str(self._path) != ":memory:" else ":memory:",
                deployment=deployment[0] if deployment else None,
            )

    def export_to(
        self,
        path: str | os.PathLike[str],
        *,
        fmt: str = "jsonl",
        node: str | None = None,
        since: Any = None,
        signer: Signer | None = None,
    ) -> int:
        """:meth:`export` to a file, atomically: written to a temporary file (0600), fsynced,
        renamed over ``path``; a kill mid-export leaves the previous file as it was."""
        with atomic_text(path) as out:
            return self.export(out, fmt=fmt, node=node, since=since, signer=signer)
