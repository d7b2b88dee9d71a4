"""Steps on vCenter/ESXi: deploy the OVA, reserve resources, lock the BIOS.

Guide: "Pexip Infinity Management Node deployment", "Conferencing Node deployment",
"Reserving virtual machine resources", "BIOS configuration".
"""

from __future__ import annotations

import dataclasses
from typing import Any

from adapters.base import DiskAllocation, Reservation, VmState
from config.errors import Rejected, Unknowable
from config.rules import iops_in_use, iops_over_budget
from orchestrator.steps.base import Change, Step, StepContext

__all__ = ["DeployOva", "ReserveResources", "LockBios", "wanted_reservation"]


async def _our_vm(ctx: StepContext) -> VmState:
    vm = await ctx.systems.vsphere.find_vm(ctx.node, ctx.identity)
    if vm is None:
        if ctx.dry_run:
            raise Unknowable(f"the VM of {ctx.node.name} is not deployed yet")
        raise Rejected(
            f"the VM of {ctx.node.name} (identity {ctx.identity}) is gone from vCenter although it was deployed; "
            f"run `orchestrator resume {ctx.node.name} --from-step deploy_ova` to deploy it again"
        )
    return vm


class DeployOva(Step):
    """Import the node's OVA on its ESXi host, datastore, folder and portgroup (VLAN checked by preflight)."""

    name = "deploy_ova"
    per_host = True

    def intent(self, ctx: StepContext) -> dict[str, Any]:
        n = ctx.node
        return {"vm": f"{n.name} on {n.host}, portgroup {n.portgroup} (VLAN {n.vlan})"}

    async def observe(self, ctx: StepContext) -> VmState | None:
        return await ctx.systems.vsphere.find_vm(ctx.node, ctx.identity)

    def diff(self, ctx: StepContext, observed: VmState | None) -> list[Change]:
        if observed is None:
            return [Change("vm", None, self.intent(ctx)["vm"])]
        return []

    async def apply(self, ctx: StepContext, observed: Any, changes: list[Change]) -> None:
        ova = ctx.deployment.ova.management if ctx.is_management else ctx.deployment.ova.conferencing
        await ctx.systems.vsphere.import_ova(ctx.node, ctx.identity, ova)


def wanted_reservation(ctx: StepContext, vm: VmState, current: Reservation, core_mhz: int) -> Reservation:
    """The guide's reservation: CPU and memory fully reserved and capped, shares normal, disks limited."""
    policy = ctx.policy.reservation
    cpu = vm.num_cpus * core_mhz
    return Reservation(
        cpu_reservation_mhz=cpu,  # "Reservation: Maximum"
        cpu_limit_mhz=cpu,  # "Limit: Minimum": the same value, no bursting
        cpu_shares=policy.cpu_shares,
        memory_reservation_mb=vm.memory_mb,  # "Reserve all guest memory (All locked)"
        memory_limit_mb=vm.memory_mb,
        memory_shares=policy.memory_shares,
        memory_locked=policy.memory_reserve_all_locked,
        disks=tuple(
            dataclasses.replace(d, shares=policy.disk_shares, iops_limit=ctx.node.disk_iops_limit)
            for d in current.disks
        ),
    )


class ReserveResources(Step):
    """CPU reservation = limit = full allocation; all memory reserved and locked; disk IOPS limits."""

    name = "reserve_resources"
    reversible = True
    per_host = True

    def intent(self, ctx: StepContext) -> dict[str, Any]:
        # The reservations equal the VM's allocation and the host's clock: known once the VM is observed.
        policy = ctx.policy.reservation
        return {
            "cpu_shares": policy.cpu_shares,
            "memory_shares": policy.memory_shares,
            "memory_locked": policy.memory_reserve_all_locked,
            "disk[*].shares": policy.disk_shares,
            "disk[*].iops_limit": ctx.node.disk_iops_limit,
        }

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        vsphere = ctx.systems.vsphere
        vm = await _our_vm(ctx)
        current = await vsphere.get_reservation(vm)
        core_mhz = await vsphere.host_cpu_mhz(vm.host)
        return {"vm": vm, "current": current, "wanted": wanted_reservation(ctx, vm, current, core_mhz)}

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        current: Reservation = observed["current"]
        wanted: Reservation = observed["wanted"]
        changes = [
            Change(f.name, getattr(current, f.name), getattr(wanted, f.name))
            for f in dataclasses.fields(Reservation)
            if f.name != "disks" and getattr(current, f.name) != getattr(wanted, f.name)
        ]
        for now, want in zip(current.disks, wanted.disks, strict=False):  # wanted has one entry per current disk
            for attr in ("shares", "iops_limit"):
                if getattr(now, attr) != getattr(want, attr):
                    changes.append(Change(f"disk[{now.label}].{attr}", getattr(now, attr), getattr(want, attr)))
        return changes

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        vm: VmState = observed["vm"]
        wanted: Reservation = observed["wanted"]
        await _check_iops_budget(ctx, vm, wanted.disks)
        await ctx.systems.vsphere.set_reservation(vm, wanted)


async def _check_iops_budget(ctx: StepContext, vm: VmState, disks: tuple[DiskAllocation, ...]) -> None:
    """Guide: the sum of all IOPS limits on a datastore must not exceed its capacity. Refuse first."""
    host = ctx.deployment.host(ctx.node.host)
    by_store: dict[str, list[int]] = {}
    for d in disks:
        by_store.setdefault(d.datastore, []).append(d.iops_limit)
    for store, limits in by_store.items():
        others = await ctx.systems.vsphere.datastore_iops_in_use(store, vm.name)
        ours = iops_in_use(limits)
        if store == host.datastore and iops_over_budget((others, ours), host.datastore_iops_capacity) is not None:
            raise Rejected(
                f"datastore {store}: IOPS limits would total {others + ours} (others {others} + {vm.name} {ours}), "
                f"over its capacity {host.datastore_iops_capacity}; lower {ctx.node.name}.disk_iops_limit "
                f"or raise vcenter.hosts[{host.name}].datastore_iops_capacity if the datastore really has more"
            )


class LockBios(Step):
    """Force BIOS setup, disk (SCSI 0:0) first, set the supervisor password, save and exit."""

    name = "lock_bios"
    per_host = True

    def _operator(self, ctx: StepContext) -> bool:
        return ctx.deployment.bios.password_method == "operator"

    def gate(self, ctx: StepContext, changes: list[Change]) -> str | None:
        # A person types the password at the console; the orchestrator waits for their word.
        return "bios_password" if self._operator(ctx) else None

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        vm = await _our_vm(ctx)
        return {"vm": vm, "bios": await ctx.systems.vsphere.get_bios(vm)}

    def intent(self, ctx: StepContext) -> dict[str, Any]:
        wanted: dict[str, Any] = {"boot_disk_first": True, "power_state": "poweredOn", "enter_bios_setup": False}
        if not self._operator(ctx):
            # The API cannot read a BIOS password; our marker says the keystrokes were sent and saved.
            wanted["locked_marker"] = True
        return wanted

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        bios = observed["bios"]
        wanted = self.intent(ctx)
        return [Change(k, getattr(bios, k), v) for k, v in wanted.items() if getattr(bios, k) != v]

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        if self._operator(ctx):
            raise Rejected(
                f"{ctx.node.name}: the operator confirmed the BIOS lock but vCenter shows "
                + "; ".join(str(c) for c in changes)
                + "; fix it at the console, then `orchestrator resume "
                + ctx.node.name
                + "`"
            )
        if ctx.deployment.bios.password is None:
            raise Rejected("bios.password is not set; set it to env:NAME or file:PATH")
        await ctx.systems.vsphere.lock_bios(observed["vm"], ctx.deployment.bios.password.reveal())
