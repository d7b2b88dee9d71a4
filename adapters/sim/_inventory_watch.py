"""The twin of the vSphere inventory watch: ``enter``/``modify``/``leave`` events from the world's VMs.

The real watch long-polls ``WaitForUpdatesEx``; here a change to the world's VMs wakes the
watchers of that world at once (an asyncio notification, :func:`vms_changed`), and the watch
reports the difference from what it last saw, as the real one does after each update. The
first report is the whole inventory, as the real watch's first update is.
"""

from __future__ import annotations

import asyncio
import fnmatch
import weakref
from collections.abc import AsyncIterator
from typing import Any

from adapters.base import InventoryEvent
from adapters.sim.world import VM, SimWorld

__all__ = ["watch_world_vms", "vms_changed"]

# Per world, the wake-up of each running watch (a world is owned by one process, one loop).
_watchers: weakref.WeakKeyDictionary[SimWorld, set[asyncio.Event]] = weakref.WeakKeyDictionary()


def vms_changed(world: SimWorld) -> None:
    """Wake every watch of ``world``: a VM was created or changed."""
    for wake in _watchers.get(world, ()):
        wake.set()


def _snapshot(world: SimWorld, pattern: str, tag: str | None) -> dict[str, tuple[str, str | None, str | None]]:
    """moref -> (name, identity, power state) of the VMs that match; ``tag``: only VMs that carry the
    identity attribute (the twin's VMs have no other custom attribute)."""
    seen = {}
    for name, vm in world.items(VM):
        if not isinstance(vm, dict) or not fnmatch.fnmatchcase(name, pattern):
            continue
        if tag is not None and not vm.get("identity"):
            continue
        seen[str(vm["moref"])] = (name, vm.get("identity"), vm.get("power_state"))
    return seen


async def watch_world_vms(
    world: SimWorld, *, pattern: str, tag: str | None, poll_s: float = 1.0
) -> AsyncIterator[InventoryEvent]:
    """Events for the world's VMs matching ``pattern``; woken by :func:`vms_changed`, and every
    ``poll_s`` for changes made without a notification."""
    wake = asyncio.Event()
    _watchers.setdefault(world, set()).add(wake)
    seen: dict[str, tuple[str, str | None, str | None]] = {}
    version = -1
    try:
        while True:
            if world.version(VM) != version:
                version = world.version(VM)
                now = _snapshot(world, pattern, tag)
                for ref in [r for r in seen if r not in now]:
                    name, identity, power = seen.pop(ref)
                    yield InventoryEvent("leave", ref, name, identity, power)
                for ref, state in now.items():
                    before: Any = seen.get(ref)
                    seen[ref] = state
                    if before is None:
                        yield InventoryEvent("enter", ref, *state)
                    elif before != state:
                        changed = tuple(
                            path
                            for path, old, new in zip(
                                ("name", "customValue", "runtime.powerState"), before, state, strict=True
                            )
                            if old != new
                        )
                        yield InventoryEvent("modify", ref, *state, changed=changed)
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), poll_s)
            except TimeoutError:
                pass
    finally:
        _watchers.get(world, set()).discard(wake)
