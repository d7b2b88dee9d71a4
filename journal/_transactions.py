"""The journal's write transactions: one ``BEGIN IMMEDIATE`` each, or savepoints of one :meth:`batch`.

A base of :class:`journal.Journal` (kept apart so that the Journal stays one job); the head of the chain
is cached here and re-read only when ``PRAGMA data_version`` says another connection wrote.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from config.errors import IntegrityError, JournalError
from journal import kinds
from journal._chain import GENESIS, check_head
from journal._reader import JournalReader

__all__ = ["RIDING_KINDS", "Transactions"]

# The opening records of a run: they need no durability of their own (a crash before the run's first
# step loses nothing the run did), so in a hold they wait for the first durable commit (issue #11).
RIDING_KINDS = frozenset(
    {
        kinds.DEPLOYMENT_BOUND,
        kinds.DEFINITION_RECORDED,
        kinds.DEFINITION_CHANGED,
        kinds.RUN_STARTED,
        kinds.NODE_REGISTERED,
    }
)


class Transactions(JournalReader):
    """Write transactions over the reader's connection (state set up by ``Journal.__init__``)."""

    _readonly: bool
    _head: tuple[int, str] | None
    _data_version: int
    _batching: bool
    _newest_checkpoint: int | None
    _bound_read: bool
    _holding: bool
    _nested: int  # batches open inside a batch or a hold (savepoints): a hold ends only outside them

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The writes inside, each still all or nothing, made durable together by ONE commit at the end.

        For a run's opening records (issue #11: one durable commit instead of one each). Nothing
        inside is durable before the block ends; an exception rolls all of it back. Not for writes
        that must be durable before a side effect, nor around :meth:`checkpoint` (refused).
        """
        with self._lock:
            if self._batching:  # inside another batch or a hold: a savepoint of that transaction, undone alone
                self._conn.execute("SAVEPOINT journal_batch")
                self._nested += 1
                try:
                    yield
                except BaseException:
                    self._head = None
                    self._conn.execute("ROLLBACK TO journal_batch")
                    raise
                finally:
                    self._nested -= 1
                    self._conn.execute("RELEASE journal_batch")
                return
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                self._batching = True
                try:
                    yield
                    conn.execute("COMMIT")
                except BaseException:
                    self._head = None
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                finally:
                    self._batching = False
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self._path}: batch failed ({exc}); nothing was written") from exc

    def hold(self) -> None:
        """Records with no durability of their own (a run's opening records) ride in the next durable transaction.

        From now on each write is a savepoint of one ``BEGIN IMMEDIATE`` transaction (all or nothing
        as before, seen by this connection at once), made durable by the end of the next commit of
        events that are not such records (:data:`RIDING_KINDS`: a run's first ``step_started``, say),
        by :meth:`release`, by a checkpoint or by :meth:`close` (issue #11). The writer's lock is held
        meanwhile: the caller bounds the hold (``orchestrator._session`` releases it after 50 ms at
        the latest). Nothing that must be durable before a side effect may be written in a hold
        except through such a commit, which ends it.
        """
        with self._lock:
            if self._batching:
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._batching = self._holding = True

    def release(self) -> None:
        """Commit what a :meth:`hold` kept (durable from now on); nothing held: nothing to do."""
        with self._lock:
            if not self._holding:
                return
            self._batching = self._holding = False
            conn = self._conn
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._head = None
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise JournalError(f"journal {self._path}: commit failed ({exc}); nothing held was written") from exc

    def _ride_ends(self, kinds_written: Iterable[str]) -> None:
        """After a write in a hold: commit the hold when the write needs durability of its own."""
        if self._holding and not self._nested and any(kind not in RIDING_KINDS for kind in kinds_written):
            self.release()

    def _begin(self, conn: sqlite3.Connection) -> None:
        # Inside a batch a write is a savepoint of the batch's transaction: all or nothing, not yet durable.
        conn.execute("SAVEPOINT journal_write" if self._batching else "BEGIN IMMEDIATE")

    def _end(self, conn: sqlite3.Connection, *, ok: bool) -> None:
        if self._batching:
            conn.execute("RELEASE journal_write" if ok else "ROLLBACK TO journal_write")
            if not ok:
                conn.execute("RELEASE journal_write")
        elif ok:
            conn.execute("COMMIT")
        elif conn.in_transaction:
            conn.execute("ROLLBACK")

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: all or nothing, sqlite errors as JournalError."""
        with self._lock:
            conn = self._conn
            try:
                self._begin(conn)
                try:
                    yield conn
                    self._end(conn, ok=True)
                except BaseException:
                    self._head = None  # what we cached may be from the rolled-back work
                    self._end(conn, ok=False)
                    raise
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self._path}: {what} failed ({exc}); nothing was written") from exc

    def _head_for_write(self, conn: sqlite3.Connection) -> tuple[int, str]:
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if self._head is not None and version == self._data_version:
            return self._head
        row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        head = (row[0], row[1]) if row else (0, GENESIS)
        seal = conn.execute("SELECT value FROM meta WHERE name = 'head'").fetchone()
        # Writing on top of a head that is not the recorded one would adopt rows someone
        # appended by hand, or hide a cut tail: refuse, and let verify() tell what happened.
        problems = check_head(seal[0] if seal else None, head[0], head[1])
        if problems:
            raise IntegrityError(
                f"journal {self._path}: its head does not match its seal ({'; '.join(problems)}); "
                "nothing was written. Run `orchestrator journal verify` to see what changed"
            )
        self._head, self._data_version = head, version
        self._newest_checkpoint, self._bound_read = None, False  # another writer may have moved them too
        return head

    def _require_writable(self) -> None:
        if self._readonly:
            raise JournalError(f"journal {self._path}: opened read-only; nothing can be written")
