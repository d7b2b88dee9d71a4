"""A de-duplicating work queue of node names, as a Kubernetes controller's workqueue.

An event only names a node. A name queued twice is queued once; a name queued while its
node is being reconciled is queued again when that reconcile ends (the event may have come
after what the reconcile read), never reconciled twice at once. ``add_after`` schedules a
look later (a backoff, a gate re-check); an ``add`` now wins over a later one.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

__all__ = ["NodeQueue"]


class NodeQueue:
    """Names waiting (in order), names being processed, and names scheduled for later."""

    def __init__(self) -> None:
        self._waiting: OrderedDict[str, None] = OrderedDict()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()  # queued again while being processed
        self._later: dict[str, asyncio.TimerHandle] = {}
        self._ready = asyncio.Event()
        self._closed = False

    def add(self, name: str) -> None:
        """Queue ``name`` now (cancels a later look at it)."""
        if self._closed:
            return
        timer = self._later.pop(name, None)
        if timer is not None:
            timer.cancel()
        if name in self._processing:
            self._dirty.add(name)
        elif name not in self._waiting:
            self._waiting[name] = None
            self._ready.set()

    def add_after(self, name: str, delay_s: float) -> None:
        """Queue ``name`` in ``delay_s`` seconds, unless it is queued (or scheduled sooner) by then."""
        if self._closed or name in self._waiting or name in self._dirty:
            return
        loop = asyncio.get_running_loop()
        timer = self._later.get(name)
        if timer is not None:
            if timer.when() <= loop.time() + delay_s:
                return
            timer.cancel()
        self._later[name] = loop.call_later(delay_s, self._fire, name)

    def _fire(self, name: str) -> None:
        self._later.pop(name, None)
        self.add(name)

    async def get(self) -> str:
        """The next name to reconcile; it counts as processing until :meth:`done`."""
        while not self._waiting:
            self._ready.clear()
            await self._ready.wait()
        name, _ = self._waiting.popitem(last=False)
        self._processing.add(name)
        return name

    def done(self, name: str) -> None:
        """The reconcile of ``name`` ended: queue it again if an event came meanwhile."""
        self._processing.discard(name)
        if name in self._dirty:
            self._dirty.discard(name)
            self.add(name)

    def close(self) -> None:
        """Drop every scheduled look (shutdown); names queued afterwards are ignored."""
        self._closed = True
        for timer in self._later.values():
            timer.cancel()
        self._later.clear()

    def statistics(self) -> dict[str, int]:
        return {
            "waiting": len(self._waiting),
            "processing": len(self._processing),
            "scheduled": len(self._later),
        }

    def __len__(self) -> int:
        return len(self._waiting)
