"""Observing VMs: batched reads, shared by design within a batch, never by a time window.

Two kinds of read, each one ``RetrievePropertiesEx`` however many callers ask at once:

* briefs of every VM of the datacenter (name, identity attribute, power, host,
  datastores, networks: a few values each), to find our VMs and foreign namesakes;
* full records of the VMs being observed right now (devices, allocations, boot
  options, extraConfig), batched over all concurrent callers, in the same call as the
  states of the tasks and import leases being waited for (:meth:`VmReader.objects`).

The briefs are read once per login (the preflight's fresh read, or the first lookup) and
then kept current (:class:`KeptBriefs`, issue #11): from this adapter's own changes (a VM
imported, tagged or removed here is added or dropped; one changed here is read afresh, by
its moref, before its brief serves again), from every full record read since, and from the
inventory watch where it runs (:meth:`VmReader.external`). Finding a node's VM is a lookup
in their index by identity and name, never a read of every VM: the work per VM does not
grow with the inventory, at any concurrency. A VM someone else adds during a run without
the watch is not seen until the next run (as with the IOPS ledger, :mod:`adapters.vsphere._reserve`);
one removed is seen by the first full read of it.

A full record read serves the callers that asked for it before it started
(:class:`~adapters.vsphere._batch.FreshRead`: the steps of many nodes observing together
share one), and nobody after: every observation of a VM's configuration is of the world
after it was asked for, however loaded the machine. The one exception is by design too: a
record read in the same call that saw a change's task succeed, and that shows the change
(:meth:`VmReader.saw`: the caller checks), is the observation that verifies the change, and
serves the next observation of that VM, once. Any failed change forgets everything: after
a fault only a new read tells what the world is. (Until issue #11 a read also served later
observations for 0.5 s: under CPU pressure that window expired and the cost of a step
depended on timing.)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from pyVmomi import vim, vmodl

from adapters.vsphere._batch import BatchRead, FreshRead, ObjectKey
from adapters.vsphere._inventory import (
    BRIEF_PATHS,
    IDENTITY_FIELD,
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

__all__ = ["Briefs", "KeptBriefs", "VmReader"]

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


_BRIEF_FIELDS = tuple(f.name for f in fields(VmBrief))


def _brief(rec: VmBrief) -> VmBrief:
    """A record cut down to its brief (the kept briefs hold no devices)."""
    return rec if type(rec) is VmBrief else VmBrief(**{name: getattr(rec, name) for name in _BRIEF_FIELDS})


def _placeholder(moref: str, name: str, custom: dict[str, str], power_state: str) -> VmBrief:
    """What is known of a VM without a read of it: found by its name and identity, and read
    afresh before it serves (it was fetched "never")."""
    return VmBrief(
        moref=moref,
        name=name,
        custom=custom,
        power_state=power_state,
        host=None,
        num_cpus=0,
        memory_mb=0,
        fetched_at=NEVER,
    )


class KeptBriefs:
    """Every VM's brief under one login, read once and kept current, with an index by
    ("identity" | "name", value): each of many nodes finds its VMs without a walk over (or a
    read of) every VM (issue #11: no cost growing with the inventory)."""

    def __init__(self, briefs: Briefs):
        self.generation = briefs.generation
        self.fields = dict(briefs.fields)
        self.fetched_at = briefs.fetched_at
        self.vms: dict[str, VmBrief] = {}
        self._index: dict[tuple[str, str], dict[str, None]] = {}  # insertion-ordered sets of morefs
        for brief in briefs.vms.values():
            self.put(brief)

    @staticmethod
    def _keys(brief: VmBrief) -> list[tuple[str, str]]:
        keys = [("name", brief.name)]
        if brief.identity is not None:
            keys.append(("identity", brief.identity))
        return keys

    def put(self, brief: VmBrief) -> None:
        """``brief`` (or a record, cut down) replaces what is kept of its VM."""
        self.drop(brief.moref)
        self.vms[brief.moref] = _brief(brief)
        for key in self._keys(brief):
            self._index.setdefault(key, {})[brief.moref] = None

    def apply(self, moref: str, brief: VmBrief | None) -> None:
        """``brief`` replaces what is kept of VM ``moref``; ``None`` drops it."""
        if brief is None:
            self.drop(moref)
        else:
            self.put(brief)

    def drop(self, moref: str) -> None:
        old = self.vms.pop(moref, None)
        if old is not None:
            for key in self._keys(old):
                self._index.get(key, {}).pop(moref, None)

    def lookup(self, *, identity: str | None, name: str | None) -> list[str]:
        """The morefs of the VMs that carry ``identity`` or are called ``name``."""
        found: dict[str, None] = {}
        for key in ((("identity", identity),) if identity is not None else ()) + (
            (("name", name),) if name is not None else ()
        ):
            found.update(self._index.get(key, {}))
        return list(found)


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
        self._kept: KeptBriefs | None = None
        self._seen: dict[str, VmRecord] = {}  # moref -> the record that verified our change: serves once
        self._changed: dict[str, float] = {}  # moref -> when it last changed (here, or seen by the watch)
        # moref -> when this adapter made, removed or (by the watch) saw it change, and what it
        # then kept of it (None: removed): replayed over a read of every brief begun before.
        self._learned: dict[str, tuple[float, VmBrief | None]] = {}
        self._everything_changed = NEVER  # a fault, or VMs came or went untold: no read before serves

    @property
    def fetches(self) -> int:
        return self._brief_reads.fetches + self._object_reads.fetches

    @property
    def brief_fetches(self) -> int:
        return self._brief_reads.fetches

    # --- bookkeeping of changes --------------------------------------------------------

    def changed(self, moref: str | None = None) -> None:
        """This adapter changed ``moref`` just now: it is read afresh before its brief serves
        again. With ``None``, VMs came or went in a way not told here: no kept brief serves."""
        now = time.monotonic()
        if moref is None:
            self._everything_changed = now  # nor does a read of every brief begun before
            self._kept = None
            self._seen.clear()
        else:
            self._changed[moref] = now
            self._seen.pop(moref, None)

    def _learn(self, moref: str, brief: VmBrief | None) -> None:
        self.changed(moref)
        self._learned[moref] = (self._changed[moref], brief)
        if self._kept is not None:
            self._kept.apply(moref, brief)

    def added(self, moref: str, name: str, identity: str) -> None:
        """This adapter made VM ``moref`` (``name``, tagged with ``identity``): found from now on,
        read afresh (by its moref) the first time it is looked up."""
        self._learn(moref, _placeholder(moref, name, {IDENTITY_FIELD: identity}, ""))

    def removed(self, moref: str) -> None:
        """This adapter removed VM ``moref``."""
        self._learn(moref, None)

    def field_defined(self, name: str, key: int) -> None:
        """This adapter defined custom field ``name``: no VM carries a value of it yet."""
        if self._kept is not None:
            self._kept.fields[name] = key

    def external(self, kind: str, moref: str, name: str, identity: str | None, power_state: str | None) -> None:
        """The inventory watch saw VM ``moref`` ``enter``, change (``modify``) or ``leave``: what
        differs from the kept brief is read afresh before it serves (an own change, already
        kept, costs nothing)."""
        kept = self._kept
        if kind == "leave":
            self.removed(moref)
            return
        old = kept.vms.get(moref) if kept is not None else None
        if old is not None and (old.name, old.identity, old.power_state) == (name, identity, power_state):
            return
        custom = {k: v for k, v in (old.custom if old is not None else {}).items() if k != IDENTITY_FIELD}
        if identity is not None:
            custom[IDENTITY_FIELD] = identity
        self._learn(moref, _placeholder(moref, name, custom, power_state or ""))

    def saw(self, rec: VmRecord) -> None:
        """``rec`` shows this adapter's last change to its VM (the caller checked that it does):
        it serves the next observation of the VM, like a read made after the change."""
        self._changed[rec.moref] = min(self._changed.get(rec.moref, NEVER), rec.fetched_at - 1e-6)
        self._seen[rec.moref] = rec
        if self._kept is not None:
            self._kept.put(rec)

    def changed_since(self, rec: VmRecord) -> bool:
        """Whether this adapter changed ``rec``'s VM (or forgot everything) since ``rec`` was read."""
        return self._changed.get(rec.moref, NEVER) >= rec.fetched_at or self._everything_changed >= rec.fetched_at

    def resync(self) -> None:
        """The next lookup reads every VM's brief afresh (once, however many ask at once), what is
        kept starting again from it; nothing read before is voided (a record read here still serves)."""
        self._kept = None

    def forget(self) -> None:
        """After a fault: serve nothing read before."""
        self._everything_changed = time.monotonic()
        self._seen.clear()
        self._kept = None

    # --- reads ------------------------------------------------------------------------------

    @property
    def last_briefs(self) -> KeptBriefs | None:
        """The kept briefs (``None`` after a fault, or before the first read)."""
        return self._kept

    async def briefs(self) -> Briefs:
        """The briefs of every VM, read after this call (shared with the callers of the same batch);
        what is kept starts again from them."""
        snap = await self._brief_reads.get()
        kept = self._kept
        if snap.fetched_at > self._everything_changed and (
            kept is None or kept.generation != snap.generation or snap.fetched_at > kept.fetched_at
        ):
            self._kept = self._from(snap)
        return snap

    def _from(self, snap: Briefs) -> KeptBriefs:
        kept = KeptBriefs(snap)
        for moref, (when, brief) in self._learned.items():
            if when >= snap.fetched_at:  # learned while the read was under way: it may not show it
                kept.apply(moref, brief)
        return kept

    async def _kept_briefs(self) -> KeptBriefs:
        kept = self._kept
        if kept is not None and kept.generation == self._session.generation:
            return kept
        snap = await self.briefs()
        kept = self._kept
        # A fault during the read: this lookup still uses it (it was read after the lookup began).
        return kept if kept is not None and kept.fetched_at == snap.fetched_at else self._from(snap)

    def _stale(self, kept: KeptBriefs, morefs: Iterable[str]) -> set[str]:
        return {m for m in morefs if self._changed.get(m, NEVER) >= kept.vms[m].fetched_at}

    async def current(self, refresh: Callable[[VmBrief], bool] | None = None) -> list[VmBrief]:
        """Every VM as it is now: the briefs read afresh, with the VMs changed here since read
        in full (the preflight judges the inventory as it is, not as kept).

        ``refresh``: which of those the caller needs afresh (default: all); the others are
        given as briefed. A change made here to one VM (``changed(moref)``) never alters
        its name or identity, so a caller that only looks at other VMs' names and identities
        need not read them.
        """
        snap = await self.briefs()
        kept = self._kept if self._kept is not None and self._kept.fetched_at == snap.fetched_at else self._from(snap)
        stale = {m for m in self._stale(kept, kept.vms) if refresh is None or refresh(kept.vms[m])}
        fresh = await self.records(stale) if stale else {}
        return [fresh[m] if m in stale else b for m, b in kept.vms.items() if m not in stale or m in fresh]

    async def named(self, *, identity: str | None = None, name: str | None = None) -> list[VmBrief]:
        """The VMs that carry ``identity`` or are called ``name``: a lookup in the kept briefs'
        index, with those changed since they were kept read afresh by moref (module docstring)."""
        kept = await self._kept_briefs()
        wanted = kept.lookup(identity=identity, name=name)
        stale = self._stale(kept, wanted)
        # Only their briefs: finding a VM needs no devices (issue #11: the verification of an
        # import read every new VM's devices, a third of the bytes of deploy + reserve).
        fresh = await self._read(stale, "brief") if stale else {}
        return [fresh[m] if m in stale else kept.vms[m] for m in wanted if m not in stale or m in fresh]

    async def records(self, morefs: Iterable[str]) -> dict[str, VmRecord]:
        """Full records of ``morefs``, read after this call; a VM that no longer exists is absent.
        What is read also brings the kept briefs up to date."""
        return await self._read(morefs, "vm")

    async def _read(self, morefs: Iterable[str], kind: str) -> dict[str, Any]:
        """:meth:`records`, or with ``kind="brief"`` the briefs (records when read with them)."""
        found: dict[str, Any] = {}
        missing: set[str] = set()
        for moref in morefs:
            rec = self._seen.pop(moref, None)
            if rec is not None and rec.fetched_at > self._everything_changed:
                found[moref] = rec
            else:
                missing.add(moref)
        if missing:
            read = await self._object_reads.get({(kind, m, 0) for m in missing})
            for (_, moref, _), rec in read.items():
                found[moref] = rec
            self._keep(read, missing, kind)
        return found

    def _keep(self, read: dict[ObjectKey, Any], asked: set[str], kind: str) -> None:
        kept = self._kept
        if kept is None:
            return
        for rec in read.values():
            kept.put(rec)  # a record read while a change was under way is still stale (_stale)
        for moref in asked:
            if (kind, moref, 0) not in read:
                kept.drop(moref)  # gone

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
            # A VM asked for both as a brief and in full is read once, in full (one spec per type).
            objs = {("vm" if kind == "brief" else kind, m) for kind, m in wanted}
            specs = [PC.ObjectSpec(obj=_KINDS[kind](m, stub)) for kind, m in sorted(objs)]
            paths = []
            if kinds & {"vm", "brief"}:
                specs.append(PC.ObjectSpec(obj=content.customFieldsManager))
                paths += [
                    PC.PropertySpec(type=vim.VirtualMachine, pathSet=VM_PATHS if "vm" in kinds else BRIEF_PATHS),
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
                    m = moid(o.obj)
                    rec = parse_vm(o, names, started) if "vm" in kinds else parse_brief(o, names, started)
                    for kind in ("vm", "brief"):
                        if (kind, m) in wanted:
                            found[wanted[(kind, m)]] = rec
                elif isinstance(o.obj, vim.Task):
                    found[wanted[("task", moid(o.obj))]] = props(o)
                elif isinstance(o.obj, vim.HttpNfcLease):
                    found[wanted[("lease", moid(o.obj))]] = props(o)
            return found

        what = "read VMs" if kinds <= {"vm", "brief"} else "read VMs, tasks and leases"
        return await self._session.call(what, read)
