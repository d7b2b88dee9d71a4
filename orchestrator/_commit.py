"""Group commit: the transitions of every node that is ready in the same loop tick
go to the journal in one SQLite transaction.

A durable commit costs one fsync whatever it holds, so with 100 nodes moving at
once the journal writes 100 transitions for the price of one. A coroutine resumes
only after *its* transaction is durable: the crash-safety protocol is unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["GroupCommitter"]


class GroupCommitter:
    """Batches ``commit(item)`` calls made in the same tick into one ``write(items)`` call."""

    def __init__(self, write: Callable[[list[Any]], list[Any]], *, max_batch: int = 500) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._scheduled = False
        self.batches = 0
        self.items = 0

    async def commit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            # call_soon runs after every callback already ready in this tick: the other
            # nodes that became ready together have queued their transitions by then.
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                results = self._write([item for item, _ in batch])
            except BaseException as exc:  # the whole transaction failed: every waiter learns it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, future), result in zip(
                batch, results, strict=True
            ):  # one result per item: a mismatch is a bug, loudly
                if not future.done():
                    future.set_result(result)
