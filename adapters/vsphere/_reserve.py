"""The ``reserved`` step on vCenter: a VM's allocation, the spec that sets it, and the IOPS budget.

The guide: "The sum of all IOP limits for all VMs on the same host must not exceed the capacity
of the datastore" (:func:`config.rules.iops_over_budget`). The limits in use on a datastore are
read once per run (per login) with one ``RetrievePropertiesEx`` over the datastore's ``vm``
property asking only for each VM's name and devices (where the disks' allocations are), never
the VMs' full records; after that :class:`IopsLedger` keeps the sum current from this adapter's
own reconfigurations: a reservation claims its limits before it is sent, and a failed one makes
the datastore be read again. Changes made by others during a run are not seen (the inventory
watch of the daemon is where they would be).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from typing import Any

from pyVmomi import vim, vmodl

from adapters.base import DiskAllocation, Reservation
from adapters.vsphere._fastprops import Devices
from adapters.vsphere._inventory import Inventory, VmRecord, moid, props, retrieve
from adapters.vsphere._session import SYSTEM, Session
from config.errors import Rejected
from config.model import VCenterSpec
from config.rules import iops_over_budget

__all__ = ["IopsLedger", "reservation", "reservation_spec", "shows_reservation", "IOPS_PATHS"]

PC = vmodl.query.PropertyCollector
IOPS_PATHS = ["name", "config.hardware.device"]  # what the budget needs of each VM on a datastore

# Nominal share values per level: vSphere derives them itself for any level but
# "custom"; they are sent so that a simulator shows what vSphere would.
_CPU_SHARES_PER_VCPU = {"low": 500, "normal": 1000, "high": 2000}
_MEM_SHARES_PER_MB = {"low": 5, "normal": 10, "high": 20}
_DISK_SHARES = {"low": 500, "normal": 1000, "high": 2000}


def _level(shares: Any) -> str:
    return str(shares.level) if shares is not None and shares.level is not None else "normal"


def reservation(rec: VmRecord, inv: Inventory) -> Reservation:
    """What ``rec`` has: CPU, memory and every disk's allocation."""
    cpu, mem = rec.cpu_allocation, rec.memory_allocation

    def num(alloc: Any, name: str, default: int) -> int:
        value = getattr(alloc, name, None) if alloc is not None else None
        return default if value is None else int(value)

    return Reservation(
        cpu_reservation_mhz=num(cpu, "reservation", 0),
        cpu_limit_mhz=num(cpu, "limit", -1),
        cpu_shares=_level(getattr(cpu, "shares", None)),
        memory_reservation_mb=num(mem, "reservation", 0),
        memory_limit_mb=num(mem, "limit", -1),
        memory_shares=_level(getattr(mem, "shares", None)),
        memory_locked=rec.memory_locked,
        disks=tuple(
            DiskAllocation(
                key=d.key,
                label=d.label,
                datastore=inv.datastores.get(d.datastore or "", d.datastore or ""),
                shares=d.shares_level,
                iops_limit=d.iops_limit,
            )
            for d in rec.disks
        ),
    )


def shows_reservation(rec: VmRecord, wanted: Reservation, inv: Inventory) -> bool:
    """Whether ``rec`` shows ``wanted`` (its listed disks; the others are left as they are)."""
    now = reservation(rec, inv)
    disks = {d.key: (d.shares, d.iops_limit) for d in now.disks}
    return dataclasses.replace(now, disks=()) == dataclasses.replace(wanted, disks=()) and all(
        disks.get(d.key) == (d.shares, d.iops_limit) for d in wanted.disks
    )


def reservation_spec(rec: VmRecord, wanted: Reservation) -> Any:
    """The one ``ConfigSpec`` that applies ``wanted`` whole (its disks must exist on ``rec``)."""
    disks = {d.key: d for d in rec.disks}
    spec = vim.vm.ConfigSpec(
        cpuAllocation=vim.ResourceAllocationInfo(
            reservation=wanted.cpu_reservation_mhz,
            limit=wanted.cpu_limit_mhz,
            expandableReservation=False,
            shares=vim.SharesInfo(
                level=wanted.cpu_shares, shares=_CPU_SHARES_PER_VCPU.get(wanted.cpu_shares, 1000) * max(1, rec.num_cpus)
            ),
        ),
        memoryAllocation=vim.ResourceAllocationInfo(
            reservation=wanted.memory_reservation_mb,
            limit=wanted.memory_limit_mb,
            expandableReservation=False,
            shares=vim.SharesInfo(
                level=wanted.memory_shares,
                shares=_MEM_SHARES_PER_MB.get(wanted.memory_shares, 10) * max(1, rec.memory_mb),
            ),
        ),
        memoryReservationLockedToMax=wanted.memory_locked,
    )
    for d in wanted.disks:
        device = copy.copy(disks[d.key].device)  # the read is shared: never edit it in place (a new top level)
        device.storageIOAllocation = vim.StorageResourceManager.IOAllocationInfo(
            limit=d.iops_limit, shares=vim.SharesInfo(level=d.shares, shares=_DISK_SHARES.get(d.shares, 1000))
        )
        spec.deviceChange.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=device))
    return spec


def _iops_by_datastore(devices: Any) -> dict[str, int]:
    """Sum of the IOPS limits of a VM's disks per datastore (moref value); unlimited (-1) adds nothing."""
    sums: dict[str, int] = {}
    if isinstance(devices, Devices):
        for d in devices:
            if issubclass(d.type, vim.vm.device.VirtualDisk) and (ds_ref := d.moref("backing/datastore")) is not None:
                sums[ds_ref] = sums.get(ds_ref, 0) + max(0, d.number("storageIOAllocation/limit", -1))
        return sums
    for d in devices or ():
        if isinstance(d, vim.vm.device.VirtualDisk):
            ds = getattr(d.backing, "datastore", None)
            limit = getattr(d.storageIOAllocation, "limit", None)
            if ds is not None:
                sums[moid(ds)] = sums.get(moid(ds), 0) + max(0, int(limit if limit is not None else -1))
    return sums


class _Table:
    """The IOPS limits on one datastore: each VM's (moref value -> name, sum of its disks' limits
    there) and their total, kept as entries change, so that asking costs the same for 10 VMs or 1000."""

    def __init__(self, entries: dict[str, tuple[str, int]]):
        self._vms: dict[str, tuple[str, int]] = {}
        self._by_name: dict[str, set[str]] = {}
        self.total = 0
        for moref, (name, iops) in entries.items():
            self.set(moref, name, iops)

    def set(self, moref: str, name: str, iops: int) -> None:
        old = self._vms.get(moref)
        if old is not None:
            self.total -= old[1]
            self._by_name.get(old[0], set()).discard(moref)
        self._vms[moref] = (name, iops)
        self._by_name.setdefault(name, set()).add(moref)
        self.total += iops

    def of(self, moref: str) -> int:
        entry = self._vms.get(moref)
        return entry[1] if entry is not None else 0

    def without(self, exclude: str) -> int:
        """The total but the VM ``exclude`` (a moref value or a name)."""
        morefs = {exclude} | self._by_name.get(exclude, set())
        return self.total - sum(self.of(m) for m in morefs)


class IopsLedger:
    """The IOPS limits in use per datastore: read once per run, kept current from our own writes.

    ``_tables[ds]`` holds each VM on datastore ``ds`` with the sum of its disks' limits there
    (:class:`_Table`). A table belongs to the login it was read under (a vCenter that restarted
    may have lost VMs): under another it is read again.
    """

    def __init__(self, session: Session, spec: VCenterSpec) -> None:
        self._session = session
        self._spec = spec
        self._tables: dict[str, tuple[int, _Table]] = {}
        self._reading: dict[str, asyncio.Future[_Table]] = {}
        self.fetches = 0

    async def _table(self, ds: str, inv: Inventory) -> _Table:
        kept = self._tables.get(ds)
        if kept is not None and kept[0] == self._session.generation:
            return kept[1]
        running = self._reading.get(ds)
        if running is None:  # one read per datastore, however many reservations ask at once
            running = self._reading[ds] = asyncio.ensure_future(self._fetch(ds, inv))
            running.add_done_callback(lambda f: self._reading.pop(ds, None) if self._reading.get(ds) is f else None)
        return await asyncio.shield(running)

    async def _fetch(self, ds: str, inv: Inventory) -> _Table:
        def read(content: Any) -> tuple[int, _Table]:
            generation = self._session.generation
            ref = inv.datastore_refs.get(ds) or vim.Datastore(ds, content.propertyCollector._stub)
            objects = retrieve(
                content,
                [
                    PC.ObjectSpec(
                        obj=ref, skip=True, selectSet=[PC.TraversalSpec(type=vim.Datastore, path="vm", skip=False)]
                    )
                ],
                [PC.PropertySpec(type=vim.VirtualMachine, pathSet=IOPS_PATHS)],
            )
            table = {}
            for o in objects:
                p = props(o)
                table[moid(o.obj)] = (
                    str(p.get("name") or ""),
                    _iops_by_datastore(p.get("config.hardware.device")).get(ds, 0),
                )
            return generation, _Table(table)

        self.fetches += 1
        generation, table = await self._session.call(
            f"read the IOPS limits on datastore {inv.datastores.get(ds, ds)}", read
        )
        self._tables[ds] = (generation, table)
        return table

    async def in_use(self, ds: str, inv: Inventory, *, exclude: str) -> int:
        """Sum of the limits of every VM on ``ds`` but ``exclude`` (a VM's moref value or name)."""
        return (await self._table(ds, inv)).without(exclude)

    async def claim(self, rec: VmRecord, wanted: Reservation, inv: Inventory) -> list[str]:
        """Check ``wanted`` against each datastore's capacity and count it in: the datastores claimed on.

        Raises:
            Rejected: the limits on a datastore would come above its capacity (nothing is counted in).
        """
        ours: dict[str, int] = {}
        for d in wanted.disks:
            ds = next((x.datastore for x in rec.disks if x.key == d.key), None)
            if ds is not None:
                ours[ds] = ours.get(ds, 0) + max(0, d.iops_limit)
        tables = {ds: await self._table(ds, inv) for ds in ours}
        # No await from here on: concurrent claims see each other's limits.
        for ds, mine in ours.items():
            name = inv.datastores.get(ds, ds)
            capacities = [h.datastore_iops_capacity for h in self._spec.hosts if h.datastore == name]
            if capacities and mine > 0:
                others = tables[ds].total - tables[ds].of(rec.moref)
                total = iops_over_budget([others, mine], min(capacities))
                if total is not None:
                    raise Rejected(
                        f"IOPS limits on datastore {name!r} would come to {total} ({rec.name}: {mine}, other VMs: "
                        f"{total - mine}), above its capacity {min(capacities)} "
                        "(vcenter.hosts[].datastore_iops_capacity); lower disk_iops_limit",
                        system=SYSTEM,
                    )
        for ds, table in tables.items():
            table.set(rec.moref, rec.name, ours[ds])
        return list(tables)

    def seed(self, datastores: set[str], records: dict[str, VmRecord]) -> None:
        """Take the limits in use on ``datastores`` from full records just read (the preflight's,
        which holds every VM on them): no read more for them this run."""
        generation = self._session.generation
        for ds in datastores:
            self._tables[ds] = (
                generation,
                _Table(
                    {
                        rec.moref: (rec.name, sum(max(0, d.iops_limit) for d in rec.disks if d.datastore == ds))
                        for rec in records.values()
                        if ds in rec.datastores or any(d.datastore == ds for d in rec.disks)
                    }
                ),
            )

    def forget(self, datastores: list[str]) -> None:
        """A reconfiguration failed (it may or may not have happened): read these datastores again."""
        for ds in datastores:
            self._tables.pop(ds, None)
