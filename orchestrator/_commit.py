"""Group commit: the transitions of every node that is ready in the same loop tick
go to the journal in one SQLite transaction.

A durable commit costs one fsync whatever it holds, so with 100 nodes moving at
once the journal writes 100 transitions for the price of one. A coroutine resumes
only after *its* transaction is durable: the crash-safety protocol is unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

__all__ = ["GroupCommitter", "Slots"]

T = TypeVar("T")


class GroupCommitter:
    """Batches ``commit(item)`` calls made in the same tick into one ``write(items)`` call."""

    def __init__(
        self,
        write: Callable[[list[Any]], list[Any]],
        *,
        max_batch: int = 500,
        window_s: float = 0.0,
        writers: Callable[[], int] | None = None,
        written: Callable[[list[Any]], None] | None = None,
        take: Callable[[], list[Any]] | None = None,
    ) -> None:
        self._write = write
        # Called with each batch's items once they are written, before any waiter resumes: what keeps
        # a copy of them (the engine's models) is as the journal then, whichever caller's items they were.
        self.written = written
        # The items queued since without a waiter (the engine's deferred transitions): they end the last
        # transaction of each flush, so that a flush leaves nothing queued behind it.
        self.take = take
        self.lost: BaseException | None = None  # a write that failed with taken items: they are gone
        self._max_batch = max_batch
        # As PostgreSQL's commit_delay with commit_siblings: while ``writers()`` (how many callers can
        # commit at all: the engine's nodes in motion) says others are active, the first commit waits
        # ``window_s`` for theirs, so that one fsync serves them all. The wait ends early once every
        # writer not parked (:meth:`parked`: waiting on a slot or on another node) waits for it: nobody
        # is left to join, and waiting on would only leave the loop idle (issue #11: ~0.2 s of every
        # simulation, 10 ms at each of the Management Node's steps while the others wait for it).
        self.window_s = window_s
        self.writers = writers
        self._parked = 0
        self._timer: asyncio.TimerHandle | None = None
        self._checking = False  # a _check_window is scheduled
        # Each entry is a group of items that must land in the same transaction, and its waiter.
        self._pending: list[tuple[list[Any], asyncio.Future[list[Any]]]] = []
        self._scheduled = False
        self.batches = 0
        self.items = 0

    async def commit(self, item: Any) -> Any:
        return (await self.commit_all([item]))[0]

    async def commit_all(self, items: list[Any]) -> list[Any]:
        """Commit ``items`` together: they land in one transaction (maybe with other callers' items), all or none."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((list(items), future))
        if not self._scheduled:
            self._scheduled = True
            # call_soon runs after every callback already ready in this tick: the other
            # nodes that became ready together have queued their transitions by then.
            if self.window_s > 0 and self.writers is not None and self.writers() > 1:
                self._timer = loop.call_later(self.window_s, self._flush)
            else:
                loop.call_soon(self._flush)
        self._end_window()
        return await future

    async def parked(self, awaitable: Awaitable[T]) -> T:
        """Await something that is not a commit (a slot, another node's progress): meanwhile this writer is
        not one a commit's window waits for."""
        self._parked += 1
        self._end_window()
        try:
            return await awaitable
        finally:
            self._parked -= 1

    def writer_gone(self) -> None:
        """A writer stopped (its node's drive ended): the window may have nobody left to wait for."""
        self._end_window()

    def _others_may_join(self) -> bool:
        return self.writers is not None and self.writers() - self._parked > len(self._pending)

    def _end_window(self) -> None:
        """Flush soon if a window is open and every writer not parked waits in it: once the callbacks
        already ready have run (a writer woken by a slot's release resumes first), if that still holds."""
        if self._timer is not None and not self._checking and not self._others_may_join():
            self._checking = True
            asyncio.get_running_loop().call_soon(self._check_window)

    def _check_window(self) -> None:
        self._checking = False
        if self._timer is not None and not self._others_may_join():
            self._flush()

    @property
    def pending(self) -> bool:
        """Whether items wait for a flush (a caller's ``commit_all`` not written yet)."""
        return bool(self._pending)

    def _next_batch(self) -> list[tuple[list[Any], asyncio.Future[list[Any]]]]:
        """Whole groups, up to ``max_batch`` items (a group is never split; a bigger one goes alone)."""
        count = 0
        for i, (group, _) in enumerate(self._pending):
            if i and count + len(group) > self._max_batch:
                batch, self._pending = self._pending[:i], self._pending[i:]
                return batch
            count += len(group)
        batch, self._pending = self._pending, []
        return batch

    def _flush(self) -> None:
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch = self._next_batch()
            items = [item for group, _ in batch for item in group]
            taken = self.take() if not self._pending and self.take is not None else []
            items += taken
            try:
                results = self._write(items)
            except BaseException as exc:  # the whole transaction failed: every waiter learns it
                if taken:
                    self.lost = exc
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if len(results) != len(items):  # one result per item: a mismatch is a bug, loudly
                raise RuntimeError(f"the journal returned {len(results)} results for {len(items)} transitions")
            self.batches += 1
            self.items += len(items)
            error: BaseException | None = None
            if self.written is not None:
                try:
                    self.written(items)
                except BaseException as exc:  # written, but not kept: the waiters learn it, as of a failed commit
                    error = exc
            at = 0
            for group, future in batch:
                if not future.done():
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(results[at : at + len(group)])
                at += len(group)


class Slots(asyncio.Semaphore):
    """A semaphore whose waiters are parked in ``committer`` (:meth:`GroupCommitter.parked`) while they wait."""

    def __init__(self, value: int, committer: GroupCommitter) -> None:
        super().__init__(value)
        self._committer = committer

    async def acquire(self) -> Literal[True]:
        if not self.locked():
            return await super().acquire()
        return await self._committer.parked(super().acquire())
