"""Batching concurrent reads into shared round trips, never serving stale data.

Many nodes go through a step at once, and each observes the world before and after it
acts. :class:`FreshRead` lets every caller that asks before a read has started share
it, and every caller that asks while one is under way share the *next* one: no caller
gets data fetched before it asked (so an observation is never stale), and N concurrent
callers cost about two round trips, not N. :class:`BatchRead` does the same for reads
of some objects (the keys asked for are read together), and :class:`TaskWaiter` waits
for tasks and import leases through such a read, together with the VM reads under way.
A read about to start waits briefly for the adapter's other calls in flight
(:class:`InFlight`): each is followed by a read of its own, which then shares this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from pyVmomi import vim

from adapters.vsphere._inventory import moid
from adapters.vsphere._session import SYSTEM, login_of, map_vmomi_errors
from config.errors import Rejected, Timeout

__all__ = ["BatchRead", "FreshRead", "InFlight", "ObjectKey", "TaskWaiter"]

T = TypeVar("T")

# ("vm" | "task" | "lease", moref value, login): what one batched object read can hold. The
# login (``_session.login_of``) a task or lease was handed out under: under another
# one its moref may name something else, so it is not read. 0 for VMs, which are told
# apart by their identity instead.
ObjectKey = tuple[str, str, int]


_YIELDS = 3  # turns of the event loop a read lets pass before it looks at the calls in flight


class InFlight:
    """The adapter's single calls in flight (writes, ``CreateImportSpec``), so that a read
    can wait for them to return: the read each is followed by (a task's state, a lease,
    a verification) then joins it instead of costing a round trip of its own.

    Args:
        max_wait_s: the longest a read waits (a slow call must not hold reads up).
    """

    def __init__(self, *, max_wait_s: float = 0.05):
        self._max_wait_s = max_wait_s
        self._count = 0
        self._idle: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._idle is None:
            self._idle = asyncio.Event()
            self._idle.set()
        return self._idle

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Around one call that is not a batched read."""
        self._count += 1
        self._event().clear()
        try:
            yield
        finally:
            self._count -= 1
            if self._count == 0:
                self._event().set()

    async def settle(self) -> None:
        """Return once no tracked call is in flight, or after ``max_wait_s``."""
        deadline = time.monotonic() + self._max_wait_s
        for _ in range(_YIELDS):
            await asyncio.sleep(0)  # callers between two calls go on to their next one first
        while self._count:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event().wait(), left)


class FreshRead(Generic[T]):
    """Single-flight reads whose results are always fetched after the request.

    ``settle``: awaited before a read starts (:meth:`InFlight.settle`), so that more callers join it.
    """

    def __init__(self, fetch: Callable[[], Awaitable[T]], settle: Callable[[], Awaitable[None]] | None = None):
        self._fetch = fetch
        self._settle = settle
        self._next: asyncio.Future[T] | None = None  # the read callers join: it has not started yet
        self._running: asyncio.Task[None] | None = None
        self.fetches = 0

    async def get(self) -> T:
        future = self._next
        if future is None:
            future = self._next = asyncio.get_running_loop().create_future()
            # Retrieve an exception nobody awaited (all callers cancelled): no warning.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            if self._running is None:
                self._running = asyncio.ensure_future(self._run())
        return await asyncio.shield(future)

    async def _run(self) -> None:
        try:
            while self._next is not None:
                if self._settle is not None:
                    await self._settle()
                # The batch closes when the fetch starts, not when it was scheduled: callers
                # that ask in between (the same turn of the event loop) share it.
                future, self._next = self._next, None
                try:
                    self.fetches += 1
                    result = await self._fetch()
                except BaseException as exc:
                    if not future.done():
                        future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise  # cancelled or interrupted: stop here (callers still waiting get a new run)
                else:
                    if not future.done():
                        future.set_result(result)
        finally:
            self._running = None
            if self._next is not None:
                self._running = asyncio.ensure_future(self._run())


K = TypeVar("K")
V = TypeVar("V")


class BatchRead(Generic[K, V]):
    """Like :class:`FreshRead`, for reads of some objects: the keys asked for until a read
    starts are read together by it (one call for all of them)."""

    def __init__(
        self,
        fetch: Callable[[frozenset[K]], Awaitable[dict[K, V]]],
        settle: Callable[[], Awaitable[None]] | None = None,
    ):
        self._fetch = fetch
        self._keys: set[K] = set()
        self._reads = FreshRead(self._fetch_pending, settle)

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
    """Waits for vSphere tasks and import leases by polling them in the shared object read.

    Args:
        read: the batched read of tasks (``info.*`` by path), leases (``state``, ``error``,
            ``info``) and VM records, keyed by :data:`ObjectKey`.
        timeout_s: longest wait for one task or lease.
    """

    def __init__(self, read: Callable[[set[ObjectKey]], Awaitable[dict[ObjectKey, Any]]], *, timeout_s: float = 600.0):
        self._read = read
        self._timeout_s = timeout_s

    async def _poll(
        self, keys: set[ObjectKey], done: Callable[[dict[ObjectKey, Any]], T | None], what: str, key: ObjectKey
    ) -> T:
        deadline = time.monotonic() + self._timeout_s
        delay = 0.02
        while True:
            states = await self._read(keys)
            if key not in states:
                raise Rejected(
                    f"{what}: {key[0]} {key[1]} vanished from vCenter (or vCenter restarted); observe again",
                    retryable=True,
                    system=SYSTEM,
                )
            outcome = done(states)
            if outcome is not None:
                return outcome
            if time.monotonic() > deadline:
                raise Timeout(f"{what}: {key[0]} {key[1]} still not done after {self._timeout_s:.0f} s", system=SYSTEM)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def wait(self, task: Any, what: str, *, vms: Iterable[str] = ()) -> tuple[Any, dict[str, Any]]:
        """The task's result once it succeeded, and the records of ``vms`` read in the same
        call (the absent are gone); the task's fault, mapped, if it failed.

        Those records may predate the task's effect (a call reads its objects one by one):
        only a caller that checks one shows the change may take it as an observation after.
        ``what`` names the action for messages ("reconfigure VM pexip-mgmt").
        """
        key = ("task", moid(task), login_of(task))
        vm_keys = {("vm", m, 0) for m in vms}

        def done(states: dict[ObjectKey, Any]) -> tuple[Any, dict[str, Any]] | None:
            info = states[key]
            state = str(info.get("info.state"))
            if state == "success":
                return info.get("info.result"), {k[1]: states[k] for k in vm_keys if k in states}
            if state == "error":
                with map_vmomi_errors(what):
                    error = info.get("info.error")
                    raise (
                        error
                        if isinstance(error, BaseException)
                        else Rejected(f"{what}: task {key[1]} failed", system=SYSTEM)
                    )
            return None

        return await self._poll({key} | vm_keys, done, what, key)

    async def lease_ready(self, lease: Any, what: str) -> Any:
        """The ``info`` of an import lease once it is ready; its fault, mapped, if it failed."""
        key = ("lease", moid(lease), login_of(lease))

        def done(states: dict[ObjectKey, Any]) -> Any:
            state = states[key]
            if state.get("state") == vim.HttpNfcLease.State.ready:
                return state["info"]
            if state.get("state") == vim.HttpNfcLease.State.error:
                with map_vmomi_errors(what):
                    raise state.get("error") or Rejected(f"{what}: the lease failed", system=SYSTEM)
            return None

        return await self._poll({key}, done, what, key)
