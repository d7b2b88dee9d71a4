"""Batching concurrent reads into shared round trips, never serving stale data.

Many nodes go through a step at once, and each observes the world before and after it
acts. :class:`FreshRead` lets every caller that asks while a read is under way share
the *next* read: no caller gets data fetched before it asked (so an observation is
never stale), and N concurrent callers cost about two round trips, not N.
:class:`TaskWaiter` polls every pending vSphere task in one read the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from pyVmomi import vim, vmodl

from adapters._vsphere_inventory import moid, props, retrieve
from adapters._vsphere_session import SYSTEM, Session, map_vmomi_errors
from config.errors import Rejected, Timeout

__all__ = ["BatchRead", "FreshRead", "TaskWaiter"]

T = TypeVar("T")


class FreshRead(Generic[T]):
    """Single-flight reads whose results are always fetched after the request."""

    def __init__(self, fetch: Callable[[], Awaitable[T]]):
        self._fetch = fetch
        self._next: asyncio.Future[T] | None = None  # the read that starts after the current one
        self._running: asyncio.Task[None] | None = None
        self.fetches = 0

    async def get(self) -> T:
        future = self._next
        if future is None:
            future = self._next = asyncio.get_running_loop().create_future()
            # Retrieve an exception nobody awaited (all callers cancelled): no warning.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            if self._running is None:
                self._start()
        return await asyncio.shield(future)

    def _start(self) -> None:
        future, self._next = self._next, None
        assert future is not None
        self._running = asyncio.ensure_future(self._run(future))

    async def _run(self, future: asyncio.Future[T]) -> None:
        try:
            self.fetches += 1
            result = await self._fetch()
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            if not future.done():
                future.set_result(result)
        finally:
            self._running = None
            if self._next is not None:
                self._start()


K = TypeVar("K")
V = TypeVar("V")


class BatchRead(Generic[K, V]):
    """Like :class:`FreshRead`, for reads of some objects: the keys asked for while a read
    is under way are read together by the next one (one call for all of them)."""

    def __init__(self, fetch: Callable[[frozenset[K]], Awaitable[dict[K, V]]]):
        self._fetch = fetch
        self._keys: set[K] = set()
        self._reads = FreshRead(self._fetch_pending)

    async def _fetch_pending(self) -> dict[K, V]:
        keys, self._keys = frozenset(self._keys), set()
        return await self._fetch(keys)

    @property
    def fetches(self) -> int:
        return self._reads.fetches

    async def get(self, keys: frozenset[K] | set[K]) -> dict[K, V]:
        """The values of ``keys`` (absent: the object does not exist), read after this call."""
        self._keys |= keys
        result = await self._reads.get()
        return {k: result[k] for k in keys if k in result}


class TaskWaiter:
    """Waits for vSphere tasks, polling all pending ones with one property read."""

    def __init__(self, session: Session, *, timeout_s: float = 600.0):
        self._session = session
        self._timeout_s = timeout_s
        self._pending: dict[str, Any] = {}
        self._read: FreshRead[dict[str, Any]] = FreshRead(self._fetch)

    async def _fetch(self) -> dict[str, Any]:
        tasks = list(self._pending.values())

        def read(content: Any) -> dict[str, Any]:
            PC = vmodl.query.PropertyCollector
            objects = retrieve(
                content,
                [PC.ObjectSpec(obj=t) for t in tasks],
                [PC.PropertySpec(type=vim.Task, pathSet=["info.state", "info.error", "info.result"])],
                report_missing=True,
            )
            return {moid(o.obj): props(o) for o in objects}

        return await self._session.call("read task states", read)

    async def wait(self, task: Any, what: str) -> Any:
        """The task's result once it succeeded; its fault, mapped, if it failed.

        ``what`` names the action for messages ("reconfigure VM pexip-mgmt").
        """
        key = moid(task)
        self._pending[key] = task
        deadline = time.monotonic() + self._timeout_s
        delay = 0.02
        try:
            while True:
                states = await self._read.get()
                info = states.get(key)
                if info is None:
                    raise Rejected(f"{what}: task {key} vanished from vCenter; observe again", retryable=True, system=SYSTEM)
                state = str(info.get("info.state"))
                if state == "success":
                    return info.get("info.result")
                if state == "error":
                    with map_vmomi_errors(what):
                        error = info.get("info.error")
                        raise error if isinstance(error, BaseException) else Rejected(f"{what}: task {key} failed", system=SYSTEM)
                if time.monotonic() > deadline:
                    raise Timeout(f"{what}: task {key} still {state} after {self._timeout_s:.0f} s", system=SYSTEM)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        finally:
            self._pending.pop(key, None)
