"""The newest of some kinds of event per node, kept current at the cost of a PRAGMA (issue #11).

The engine asks before every step whether an operator put the node in maintenance, from any
process (issue #7 Build 8: honoured before the next step): ~29,000 questions in a 1000-node
simulation. This watch answers from memory while the journal connection's ``PRAGMA data_version``
is unchanged (it changes when *another* connection commits, never for this connection's own
commits) and this connection appended no event of the kinds watched (:meth:`appended`); else one
statement reads the events of those kinds after the last one read, for every node at once. So an
answer is as fresh as a query, and a step costs one PRAGMA and no read while nobody else wrote.

It used to keep a read-only connection of its own, so that it never waited for the writer's lock
that the group commit's thread held through each COMMIT's fsync; that thread is gone (the commit
runs on the event loop), and on its own connection every commit of this process's writer was
"another connection": each answer after a commit was a read (1,300 of them per 1000-node run).

A caller may accept an answer up to ``max_age_s`` old: then one PRAGMA serves every question asked within that
time after it (the engine's, ``orchestrator._history.maintenance_of``: 18,000 PRAGMAs of ~9 us CPU each, and a
release of the GIL each, fell to ~3,000 in a 1000-node simulation). Exactly: another connection's commit is seen
by every question asked at least ``max_age_s`` after it returned; this connection's own appends of a watched kind
by the next question, whatever the age.
"""

from __future__ import annotations

import sqlite3
from time import monotonic

__all__ = ["LatestKinds"]


class LatestKinds:
    """Per node, the kind of its newest event among ``kinds``, read through the journal's connection."""

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self._kinds = frozenset(kinds)
        marks = ", ".join("?" * len(kinds))
        # One statement, so one read snapshot: the newest seq (first row) and the watched events up to it agree.
        self._sql = (
            "SELECT coalesce(max(seq), 0), NULL, NULL FROM events UNION ALL "
            f"SELECT seq, node, kind FROM events WHERE seq > ? AND kind IN ({marks})"
        )
        self._params = tuple(kinds)
        self._version: int | None = None  # the connection's data_version when last read (None: read next time)
        self._asked = 0.0  # the monotonic time just before the last PRAGMA data_version: what it saw is that fresh
        # This connection may have appended a watched kind not read since outside a transaction (at first: the
        # open transaction, if any, may hold some from before this watch existed).
        self._pending = True
        self._after = 0  # the events up to this seq were read
        self._latest: dict[str, tuple[int, str]] = {}

    def kind(self, conn: sqlite3.Connection, node: str, max_age_s: float = 0.0) -> str | None:
        """The kind of ``node``'s newest event among the kinds watched (None: none); the caller holds the lock.

        ``max_age_s``: the answer may miss another connection's commits of the last ``max_age_s`` seconds (0: none).
        """
        now = monotonic()
        if self._version is not None and now - self._asked < max_age_s:
            found = self._latest.get(node)
            return found[1] if found is not None else None
        self._asked = now
        version = conn.execute("PRAGMA data_version").fetchone()[0]  # before the read: a commit after it is seen
        if version != self._version:
            self._read(conn)
            # Read inside this connection's open transaction (a hold or batch) after it appended a watched kind:
            # that event may still roll back, so the next question reads again.
            pending = self._pending and conn.in_transaction
            self._version, self._pending = (None if pending else version), pending
        found = self._latest.get(node)
        return found[1] if found is not None else None

    def appended(self, kind: str) -> None:
        """This connection appends an event of ``kind`` (before its COMMIT): a watched kind is read again."""
        if kind in self._kinds:
            self._version, self._pending = None, True

    def _read(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(self._sql, (self._after, *self._params)).fetchall()
        last = rows[0][0]
        if last < self._after:  # the chain was cut (verify says so): read it all again
            self._after, self._latest = 0, {}
            rows = conn.execute(self._sql, (0, *self._params)).fetchall()
            last = rows[0][0]
        for seq, node, kind in sorted(rows[1:]):
            if node is not None:
                self._latest[node] = (seq, kind)
        self._after = last

    def close(self) -> None:
        """Forget what was read (the journal closes): the next question reads again."""
        self._version, self._pending, self._after, self._latest = None, True, 0, {}
