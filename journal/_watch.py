"""The newest of some kinds of event per node, kept current from a reader connection of its own (issue #11).

The engine asks before every step whether an operator put the node in maintenance, from any
process (issue #7): a query per node per step, on the journal's one connection, which the
group commit's thread holds through each COMMIT's fsync. This watch answers from memory while
``PRAGMA data_version`` of its own read-only connection says nothing was committed since (by
anyone: another process, or this process's writer, which is another connection too); when it
says something was, the events after the last one read are scanned for those kinds, in one
read snapshot. So every answer is as fresh as a query, and a write never blocks it: SQLite's WAL
lets a reader read while a writer commits.
"""

from __future__ import annotations

import sqlite3
import threading
import urllib.parse
from pathlib import Path

__all__ = ["LatestKinds"]


class LatestKinds:
    """Per node, the kind of its newest event among ``kinds`` (a journal file, not ``:memory:``)."""

    def __init__(self, path: Path, kinds: tuple[str, ...], *, busy_timeout_s: float) -> None:
        self._path = path
        self._kinds = kinds
        self._timeout = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        self._after = 0  # the events up to this seq were read
        self._latest: dict[str, tuple[int, str]] = {}

    def kind(self, node: str) -> str | None:
        """The kind of ``node``'s newest event among the kinds watched (None: none)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                conn = self._conn = sqlite3.connect(
                    f"file:{urllib.parse.quote(str(self._path))}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self._timeout,
                )
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                self._read(conn)
                self._version = version
            found = self._latest.get(node)
        return found[1] if found is not None else None

    def _read(self, conn: sqlite3.Connection) -> None:
        marks = ", ".join("?" * len(self._kinds))
        conn.execute("BEGIN")  # one snapshot: the newest seq and the events up to it agree
        try:
            (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            if last < self._after:  # the chain was cut (verify says so): read it all again
                self._after, self._latest = 0, {}
            rows = conn.execute(
                f"SELECT seq, node, kind FROM events WHERE seq > ? AND seq <= ? AND kind IN ({marks}) ORDER BY seq",
                (self._after, last, *self._kinds),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        for seq, node, kind in rows:
            if node is not None:
                self._latest[node] = (seq, kind)
        self._after = last

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
