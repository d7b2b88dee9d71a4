"""Observing VMs: batched reads, and how long one read may serve later observations.

Two kinds of read, each one ``RetrievePropertiesEx`` however many callers ask at once:

* briefs of every VM of the datacenter (name, identity attribute, power, host,
  datastores, networks: a few values each), to find our VMs and foreign namesakes;
* full records of the VMs being observed right now (devices, allocations, boot
  options, extraConfig), batched over all concurrent callers.

A step observes, acts, then observes again; many steps run at once. A read taken after
this adapter's last change to a VM, and at most ``max_age_s`` old, serves later
observations of that VM too: a verification after a change always reads anew, and
back-to-back observations cost one read. A VM changed here since the briefs were read
is taken from a fresh full record instead. Any failed change forgets everything: after
a fault only a new read tells what the world is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

from adapters._vsphere_batch import BatchRead, FreshRead
from adapters._vsphere_inventory import (
    BRIEF_PATHS,
    VM_PATHS,
    Inventory,
    VmBrief,
    VmRecord,
    moid,
    parse_brief,
    parse_vm,
    props,
    retrieve,
)
from adapters._vsphere_session import Session

__all__ = ["Briefs", "VmReader"]

PC = vmodl.query.PropertyCollector
NEVER = float("-inf")


@dataclass(frozen=True)
class Briefs:
    vms: dict[str, VmBrief]
    fields: dict[str, int]  # custom field name -> key
    fetched_at: float


def _gone(obj_content: Any) -> bool:
    return any(isinstance(m.fault, vmodl.fault.ManagedObjectNotFound) for m in obj_content.missingSet or ())


def _field_names(objects: Iterable[Any]) -> dict[str, int]:
    fields: dict[str, int] = {}
    for o in objects:
        if isinstance(o.obj, vim.CustomFieldsManager):
            for f in props(o).get("field") or ():
                if f.managedObjectType in (None, vim.VirtualMachine):
                    fields[f.name] = f.key
    return fields


class VmReader:
    """The VM reads of one adapter, with their reuse rules (module docstring)."""

    def __init__(self, session: Session, inventory: Callable[[Any], Inventory], *, max_age_s: float):
        self._session = session
        self._inventory = inventory  # content -> the datacenter's inventory (worker thread)
        self._max_age_s = max_age_s
        self._brief_reads: FreshRead[Briefs] = FreshRead(self._fetch_briefs)
        self._full_reads: BatchRead[str, VmRecord] = BatchRead(self._fetch_full)
        self._briefs: Briefs | None = None
        self._records: dict[str, VmRecord] = {}
        self._changed: dict[str, float] = {}  # moref -> when this adapter last changed it
        self._everything_changed = NEVER  # a VM made or removed, a fault: no read before serves

    @property
    def fetches(self) -> int:
        return self._brief_reads.fetches + self._full_reads.fetches

    # --- bookkeeping of changes --------------------------------------------------------

    def changed(self, moref: str | None = None) -> None:
        """This adapter changed ``moref`` (or, with ``None``, the set of VMs) just now."""
        now = time.monotonic()
        if moref is None:
            self._everything_changed = now
        else:
            self._changed[moref] = now

    def forget(self) -> None:
        """After a fault: serve nothing read before."""
        self._everything_changed = time.monotonic()
        self._records.clear()
        self._briefs = None

    def _fresh(self, fetched_at: float, moref: str | None = None) -> bool:
        if time.monotonic() - fetched_at > self._max_age_s or fetched_at <= self._everything_changed:
            return False
        return moref is None or fetched_at > self._changed.get(moref, NEVER)

    # --- reads ------------------------------------------------------------------------------

    async def briefs(self) -> Briefs:
        last = self._briefs
        if last is not None and self._fresh(last.fetched_at):
            return last
        snap = await self._brief_reads.get()
        if self._briefs is None or snap.fetched_at > self._briefs.fetched_at:
            self._briefs = snap
        return snap

    async def current(self) -> list[VmBrief]:
        """Every VM as it is now: the briefs, with the VMs changed here since read afresh."""
        snap = await self.briefs()
        stale = {m for m in snap.vms if self._changed.get(m, NEVER) >= snap.fetched_at}
        fresh = await self.records(stale) if stale else {}
        return [fresh[m] if m in stale else b for m, b in snap.vms.items() if m not in stale or m in fresh]

    async def records(self, morefs: Iterable[str]) -> dict[str, VmRecord]:
        """Full records of ``morefs``; a VM that no longer exists is absent."""
        found: dict[str, VmRecord] = {}
        missing: set[str] = set()
        for moref in morefs:
            rec = self._records.get(moref)
            if rec is not None and self._fresh(rec.fetched_at, moref):
                found[moref] = rec
            else:
                missing.add(moref)
        if missing:
            for moref, rec in (await self._full_reads.get(missing)).items():
                old = self._records.get(moref)
                if old is None or rec.fetched_at > old.fetched_at:
                    self._records[moref] = rec
                found[moref] = rec
        return found

    # --- fetching ------------------------------------------------------------------------------

    async def _fetch_briefs(self) -> Briefs:
        started = time.monotonic()

        def read(content: Any) -> Briefs:
            inv = self._inventory(content)
            view = self._session.once("vm_view", lambda: content.viewManager.CreateContainerView(
                container=inv.vm_folder, type=[vim.VirtualMachine], recursive=True))
            objects = retrieve(
                content,
                [
                    PC.ObjectSpec(obj=view, skip=True, selectSet=[PC.TraversalSpec(type=vim.view.ContainerView, path="view", skip=False)]),
                    PC.ObjectSpec(obj=content.customFieldsManager, skip=False),
                ],
                [PC.PropertySpec(type=vim.VirtualMachine, pathSet=BRIEF_PATHS),
                 PC.PropertySpec(type=vim.CustomFieldsManager, pathSet=["field"])],
            )
            fields = _field_names(objects)
            names = {key: name for name, key in fields.items()}
            vms = [parse_brief(o, names, started) for o in objects if isinstance(o.obj, vim.VirtualMachine)]
            return Briefs(vms={vm.moref: vm for vm in vms}, fields=fields, fetched_at=started)

        return await self._session.call("read the VMs", read)

    async def _fetch_full(self, morefs: frozenset[str]) -> dict[str, VmRecord]:
        started = time.monotonic()

        def read(content: Any) -> dict[str, VmRecord]:
            objects = retrieve(
                content,
                [*(PC.ObjectSpec(obj=vim.VirtualMachine(m, content.propertyCollector._stub)) for m in sorted(morefs)),
                 PC.ObjectSpec(obj=content.customFieldsManager)],
                [PC.PropertySpec(type=vim.VirtualMachine, pathSet=VM_PATHS),
                 PC.PropertySpec(type=vim.CustomFieldsManager, pathSet=["field"])],
                report_missing=True,
            )
            names = {key: name for name, key in _field_names(objects).items()}
            return {
                moid(o.obj): parse_vm(o, names, started)
                for o in objects
                if isinstance(o.obj, vim.VirtualMachine) and not _gone(o)
            }

        return await self._session.call("read VMs", read)
