"""Observing VMs: batched reads, shared by design within a batch, never by a time window.

Two kinds of read, each one ``RetrievePropertiesEx`` however many callers ask at once:

* briefs of every VM of the datacenter (name, identity attribute, power, host,
  datastores, networks: a few values each), to find our VMs and foreign namesakes;
* full records of the VMs being observed right now (devices, allocations, boot
  options, extraConfig), batched over all concurrent callers, in the same call as the
  states of the tasks and import leases being waited for (:meth:`VmReader.objects`).

A read serves the callers that asked for it before it started (:class:`~adapters.vsphere._batch.FreshRead`:
the steps of many nodes observing together share one), and nobody after: every observation
is of the world after it was asked for, however loaded the machine. The one exception is
by design too: a record read in the same call that saw a change's task succeed, and that
shows the change (:meth:`VmReader.saw`: the caller checks), is the observation that
verifies the change, and serves the next observation of that VM, once. A VM changed
here since the briefs were read is taken from a fresh full record instead. Any failed
change forgets everything: after a fault only a new read tells what the world is.
(Until issue #11 a read also served later observations for 0.5 s: under CPU pressure
that window expired and the cost of a step depended on timing.)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

from adapters.vsphere._batch import BatchRead, FreshRead, ObjectKey
from adapters.vsphere._inventory import (
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
from adapters.vsphere._session import Session

__all__ = ["Briefs", "VmReader"]

PC = vmodl.query.PropertyCollector
NEVER = float("-inf")
_KINDS = {"vm": vim.VirtualMachine, "task": vim.Task, "lease": vim.HttpNfcLease}
TASK_PATHS = ["info.state", "info.error", "info.result"]
LEASE_PATHS = ["state", "error", "info"]


@dataclass(frozen=True)
class Briefs:
    vms: dict[str, VmBrief]
    fields: dict[str, int]  # custom field name -> key
    fetched_at: float
    generation: int = 0  # the login it was read under (field keys are per vCenter life)

    @functools.cached_property
    def index(self) -> dict[tuple[str, str], list[str]]:
        """("identity" | "name", value) -> the morefs of the VMs that have it, in read order: each of
        many nodes finds its VMs without a walk over every VM (issue #11: no cost quadratic in VMs)."""
        index: dict[tuple[str, str], list[str]] = {}
        for moref, brief in self.vms.items():
            if brief.identity is not None:
                index.setdefault(("identity", brief.identity), []).append(moref)
            index.setdefault(("name", brief.name), []).append(moref)
        return index


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

    def __init__(
        self,
        session: Session,
        inventory: Callable[[Any], Inventory],
        *,
        settle: Callable[[], Awaitable[None]] | None = None,
    ):
        self._session = session
        self._inventory = inventory  # content -> the datacenter's inventory (worker thread)
        self._brief_reads: FreshRead[Briefs] = FreshRead(self._fetch_briefs, settle)
        self._object_reads: BatchRead[ObjectKey, Any] = BatchRead(self._fetch_objects, settle)
        self._briefs: Briefs | None = None
        self._seen: dict[str, VmRecord] = {}  # moref -> the record that verified our change: serves once
        self._changed: dict[str, float] = {}  # moref -> when this adapter last changed it
        self._everything_changed = NEVER  # a VM made or removed, a fault: no read before serves

    @property
    def fetches(self) -> int:
        return self._brief_reads.fetches + self._object_reads.fetches

    @property
    def brief_fetches(self) -> int:
        return self._brief_reads.fetches

    # --- bookkeeping of changes --------------------------------------------------------

    def changed(self, moref: str | None = None) -> None:
        """This adapter changed ``moref`` (or, with ``None``, the set of VMs) just now."""
        now = time.monotonic()
        if moref is None:
            self._everything_changed = now
            self._seen.clear()
        else:
            self._changed[moref] = now
            self._seen.pop(moref, None)

    def saw(self, rec: VmRecord) -> None:
        """``rec`` shows this adapter's last change to its VM (the caller checked that it does):
        it serves the next observation of the VM, like a read made after the change."""
        self._changed[rec.moref] = min(self._changed.get(rec.moref, NEVER), rec.fetched_at - 1e-6)
        self._seen[rec.moref] = rec

    def forget(self) -> None:
        """After a fault: serve nothing read before."""
        self._everything_changed = time.monotonic()
        self._seen.clear()
        self._briefs = None

    # --- reads ------------------------------------------------------------------------------

    @property
    def last_briefs(self) -> Briefs | None:
        """The latest briefs read, however old (``None`` after a fault)."""
        return self._briefs

    async def briefs(self) -> Briefs:
        """The briefs of every VM, read after this call (shared with the callers of the same batch)."""
        snap = await self._brief_reads.get()
        if self._briefs is None or snap.fetched_at > self._briefs.fetched_at:
            self._briefs = snap
        return snap

    async def current(self, refresh: Callable[[VmBrief], bool] | None = None) -> list[VmBrief]:
        """Every VM as it is now: the briefs, with the VMs changed here since read afresh.

        ``refresh``: which of those the caller needs afresh (default: all); the others are
        given as briefed. A change made here to one VM (``changed(moref)``) never alters
        its name or identity (that is ``changed()``, after which no brief serves), so a
        caller that only looks at other VMs' names and identities need not read them.
        """
        snap = await self.briefs()
        stale = {
            m
            for m, b in snap.vms.items()
            if self._changed.get(m, NEVER) >= snap.fetched_at and (refresh is None or refresh(b))
        }
        fresh = await self.records(stale) if stale else {}
        return [fresh[m] if m in stale else b for m, b in snap.vms.items() if m not in stale or m in fresh]

    async def named(self, *, identity: str | None = None, name: str | None = None) -> list[VmBrief]:
        """The VMs that carry ``identity`` or are called ``name``, as they are now: what
        ``current(refresh=...)`` gives of them, without a walk over every VM (the briefs' index;
        a change made here to one VM never alters its name or identity)."""
        snap = await self.briefs()
        wanted = dict.fromkeys(
            [
                *(snap.index.get(("identity", identity), []) if identity is not None else []),
                *(snap.index.get(("name", name), []) if name is not None else []),
            ]
        )
        stale = {m for m in wanted if self._changed.get(m, NEVER) >= snap.fetched_at}
        fresh = await self.records(stale) if stale else {}
        return [fresh[m] if m in stale else snap.vms[m] for m in wanted if m not in stale or m in fresh]

    async def records(self, morefs: Iterable[str]) -> dict[str, VmRecord]:
        """Full records of ``morefs``, read after this call; a VM that no longer exists is absent."""
        found: dict[str, VmRecord] = {}
        missing: set[str] = set()
        for moref in morefs:
            rec = self._seen.pop(moref, None)
            if rec is not None and rec.fetched_at > self._everything_changed:
                found[moref] = rec
            else:
                missing.add(moref)
        if missing:
            read = await self._object_reads.get({("vm", m, 0) for m in missing})
            for (_, moref, _), rec in read.items():
                found[moref] = rec
        return found

    async def objects(self, keys: set[ObjectKey]) -> dict[ObjectKey, Any]:
        """Tasks (``info.*`` by path), leases (``state``, ``error``, ``info``) and VM records,
        read after this call, with the VM reads under way; nothing is kept (see :meth:`saw`)."""
        return await self._object_reads.get(keys)

    # --- fetching ------------------------------------------------------------------------------

    async def _fetch_briefs(self) -> Briefs:
        started = time.monotonic()

        def read(content: Any) -> Briefs:
            generation = self._session.generation
            inv = self._inventory(content)
            view = self._session.once(
                "vm_view",
                lambda: content.viewManager.CreateContainerView(
                    container=inv.vm_folder, type=[vim.VirtualMachine], recursive=True
                ),
            )
            objects = retrieve(
                content,
                [
                    PC.ObjectSpec(
                        obj=view,
                        skip=True,
                        selectSet=[PC.TraversalSpec(type=vim.view.ContainerView, path="view", skip=False)],
                    ),
                    PC.ObjectSpec(obj=content.customFieldsManager, skip=False),
                ],
                [
                    PC.PropertySpec(type=vim.VirtualMachine, pathSet=BRIEF_PATHS),
                    PC.PropertySpec(type=vim.CustomFieldsManager, pathSet=["field"]),
                ],
            )
            fields = _field_names(objects)
            names = {key: name for name, key in fields.items()}
            vms = [parse_brief(o, names, started) for o in objects if isinstance(o.obj, vim.VirtualMachine)]
            return Briefs(vms={vm.moref: vm for vm in vms}, fields=fields, fetched_at=started, generation=generation)

        return await self._session.call("read the VMs", read)

    async def _fetch_objects(self, keys: frozenset[ObjectKey]) -> dict[ObjectKey, Any]:
        started = time.monotonic()
        kinds = {kind for kind, _, _ in keys}

        def read(content: Any) -> dict[ObjectKey, Any]:
            stub = content.propertyCollector._stub
            login = getattr(stub, "generation", 0)
            # A task or lease of an earlier login is not asked for: it is reported gone.
            wanted = {(kind, m): (kind, m, of) for kind, m, of in keys if of in (0, login)}
            if not wanted:
                return {}
            specs = [PC.ObjectSpec(obj=_KINDS[kind](m, stub)) for kind, m in sorted(wanted)]
            paths = []
            if "vm" in kinds:
                specs.append(PC.ObjectSpec(obj=content.customFieldsManager))
                paths += [
                    PC.PropertySpec(type=vim.VirtualMachine, pathSet=VM_PATHS),
                    PC.PropertySpec(type=vim.CustomFieldsManager, pathSet=["field"]),
                ]
            if "task" in kinds:
                paths.append(PC.PropertySpec(type=vim.Task, pathSet=TASK_PATHS))
            if "lease" in kinds:
                paths.append(PC.PropertySpec(type=vim.HttpNfcLease, pathSet=LEASE_PATHS))
            objects = retrieve(content, specs, paths, report_missing=True)
            names = {key: name for name, key in _field_names(objects).items()}
            found: dict[ObjectKey, Any] = {}
            for o in objects:
                if _gone(o):
                    continue
                if isinstance(o.obj, vim.VirtualMachine):
                    found[wanted[("vm", moid(o.obj))]] = parse_vm(o, names, started)
                elif isinstance(o.obj, vim.Task):
                    found[wanted[("task", moid(o.obj))]] = props(o)
                elif isinstance(o.obj, vim.HttpNfcLease):
                    found[wanted[("lease", moid(o.obj))]] = props(o)
            return found

        what = "read VMs" if kinds == {"vm"} else "read VMs, tasks and leases"
        return await self._session.call(what, read)
