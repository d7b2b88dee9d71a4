"""Inventory watching: VM enter/modify/leave events from ``WaitForUpdatesEx``.

One property collector of its own (so its long poll does not disturb the reads of the
steps), a container view of the datacenter's VMs, and a filter on the few properties
the daemon shows. On a fault the watch connects again, takes the full state once more
and reports the difference from what it last saw: no event is lost across a
reconnection, and none is invented.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from pyVmomi import vim, vmodl

from adapters.base import InventoryEvent
from adapters.vsphere._inventory import IDENTITY_FIELD, moid
from adapters.vsphere._session import Session
from config.errors import AdapterError

__all__ = ["InventoryEvent", "fold_updates", "watch_vms"]

PC = vmodl.query.PropertyCollector
WATCH_PATHS = ["name", "runtime.powerState", "customValue"]


def _wait_for_updates(collector: Any, version: str, options: Any, _client: Any) -> Any:
    """One long poll of the inventory (run in the session's worker thread)."""
    return collector.WaitForUpdatesEx(version=version, options=options)


@dataclass
class _Seen:
    name: str = ""
    power_state: str | None = None
    custom: dict[int, str] | None = None

    def attributes(self, fields: dict[int, str]) -> dict[str, str]:
        return {fields[k]: v for k, v in (self.custom or {}).items() if k in fields}


Folded = dict[str, tuple[str, _Seen, tuple[str, ...]]]


def fold_updates(updates: Any, seen: dict[str, _Seen], fields: dict[int, str]) -> tuple[Folded, dict[int, str]]:
    """One ``UpdateSet`` as each VM's (kind, state after it, property paths changed), and the custom fields.

    One update may hold several entries for one VM (vcsim sends a new VM's ``enter`` and then
    its later changes, each with only what changed): each builds on the one before it, an
    ``enter`` stays an ``enter``, and a VM that came and went within the update is left out.
    """
    now: Folded = {}
    for filter_set in updates.filterSet or ():
        for update in filter_set.objectSet or ():
            if isinstance(update.obj, vim.CustomFieldsManager):
                for change in update.changeSet or ():
                    if change.name == "field":
                        fields = {f.key: f.name for f in change.val or ()}
                continue
            ref = moid(update.obj)
            kind, base, before = now.get(ref) or ("", seen.get(ref) or _Seen(), ())
            s = _Seen(**vars(base))
            names = list(before)
            for change in update.changeSet or ():
                names.append(change.name)
                if change.name == "name":
                    s.name = change.val or ""
                elif change.name == "runtime.powerState":
                    s.power_state = str(change.val) if change.val is not None else None
                elif change.name == "customValue":
                    s.custom = {v.key: getattr(v, "value", "") for v in change.val or ()}
            this = str(update.kind)
            if kind == "enter" and this == "leave" and ref not in seen:
                del now[ref]
                continue
            now[ref] = (kind if kind == "enter" and this != "leave" else this, s, tuple(dict.fromkeys(names)))
    return now, fields


def _start(content: Any, vm_folder: Any) -> tuple[Any, Any]:
    collector = content.propertyCollector.CreatePropertyCollector()
    view = content.viewManager.CreateContainerView(container=vm_folder, type=[vim.VirtualMachine], recursive=True)
    spec = PC.FilterSpec(
        objectSet=[
            PC.ObjectSpec(
                obj=view, skip=True, selectSet=[PC.TraversalSpec(type=vim.view.ContainerView, path="view", skip=False)]
            ),
            PC.ObjectSpec(obj=content.customFieldsManager, skip=False),
        ],
        propSet=[
            PC.PropertySpec(type=vim.VirtualMachine, pathSet=WATCH_PATHS),
            PC.PropertySpec(type=vim.CustomFieldsManager, pathSet=["field"]),
        ],
    )
    collector.CreateFilter(spec=spec, partialUpdates=False)
    return collector, view


def _stop(collector: Any, view: Any) -> None:
    with contextlib.suppress(Exception):
        collector.CancelWaitForUpdates()
    with contextlib.suppress(Exception):
        collector.DestroyPropertyCollector()
    with contextlib.suppress(Exception):
        view.DestroyView()


async def watch_vms(
    session: Session,
    vm_folder_of: Any,
    *,
    pattern: str,
    tag: str | None,
    wait_s: int = 20,
    retry_s: float = 1.0,
    on_change: Callable[[InventoryEvent], None] | None = None,
) -> AsyncIterator[InventoryEvent]:
    """Events for the VMs whose name matches ``pattern`` (fnmatch) and, when ``tag`` is
    given, that carry a non-empty custom attribute of that name.

    ``on_change``: told of every VM's change, matching or not, as it is seen (the adapter
    keeps its briefs current with it: ``adapters.vsphere._reads.VmReader.external``).

    ``vm_folder_of(content)`` returns the datacenter's VM folder (worker thread).
    vSphere tags (the CIS REST tagging API) are not reachable over SOAP: custom
    attributes play their part here.
    """
    seen: dict[str, _Seen] = {}
    fields: dict[int, str] = {}
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vsphere-watch")

    def matches(s: _Seen) -> bool:
        if not fnmatch.fnmatchcase(s.name, pattern):
            return False
        return tag is None or bool(s.attributes(fields).get(tag))

    def event(
        kind: Literal["enter", "modify", "leave"], ref: str, s: _Seen, changed: tuple[str, ...] = ()
    ) -> InventoryEvent:
        return InventoryEvent(kind, ref, s.name, s.attributes(fields).get(IDENTITY_FIELD), s.power_state, changed)

    def told(
        kind: Literal["enter", "modify", "leave"], ref: str, s: _Seen, changed: tuple[str, ...] = ()
    ) -> InventoryEvent:
        seen_event = event(kind, ref, s, changed)
        if on_change is not None:
            on_change(seen_event)
        return seen_event

    handle: tuple[Any, Any] | None = None
    try:
        while True:
            try:
                handle = await session.call(
                    "watch the inventory", lambda c: _start(c, vm_folder_of(c)), executor=executor
                )
                collector = handle[0]
                version = ""
                first = True
                while True:
                    options = PC.WaitOptions(maxWaitSeconds=wait_s)
                    # Not retried in place: after any fault the watch takes the full state
                    # again and reports the difference, which loses nothing even where a
                    # server dropped the updates of a failed call (vcsim 0.24 does, when a VM
                    # is changed and destroyed within one of its 250 ms ticks).
                    updates = await session.call(
                        "watch the inventory",
                        functools.partial(_wait_for_updates, collector, version, options),
                        idempotent=False,
                        executor=executor,
                    )
                    if updates is None:
                        continue
                    version = updates.version
                    now, fields = fold_updates(updates, seen, fields)
                    if first:
                        # The full state after (re)connecting: report the difference.
                        first = False
                        for ref in list(seen):
                            if ref not in now:
                                old = seen.pop(ref)
                                gone = told("leave", ref, old)
                                if matches(old):
                                    yield gone
                        for ref, (_, s, _) in now.items():
                            prev = seen.get(ref)
                            seen[ref] = s
                            if prev is None:
                                came = told("enter", ref, s)
                                if matches(s):
                                    yield came
                            elif (prev.name, prev.power_state, prev.custom) != (s.name, s.power_state, s.custom):
                                now_event = told("modify", ref, s, ("name", "runtime.powerState", "customValue"))
                                if matches(s):
                                    yield now_event
                        continue
                    for ref, (kind, s, changed) in now.items():
                        if kind == "leave":
                            old = seen.pop(ref, s)
                            gone = told("leave", ref, old)
                            if matches(old):
                                yield gone
                        elif kind == "enter" or ref not in seen:
                            seen[ref] = s
                            came = told("enter", ref, s)
                            if matches(s):
                                yield came
                        else:
                            was = matches(seen[ref])
                            seen[ref] = s
                            now_event = told("modify", ref, s, changed)
                            if matches(s):
                                yield now_event if was else dataclasses.replace(now_event, kind="enter")
                            elif was:
                                yield event("leave", ref, s)
            except AdapterError:
                if handle is not None:
                    await asyncio.to_thread(_stop, *handle)
                    handle = None
                await asyncio.sleep(retry_s)
    finally:
        if handle is not None:
            # Cancel the long poll so the worker thread returns now, not in wait_s.
            await asyncio.shield(asyncio.to_thread(_stop, *handle))
        executor.shutdown(wait=False)
