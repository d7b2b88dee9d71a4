"""A real vCenter seen by simulated nodes: what the lab (vcsim + simulated Pexip) needs.

The simulated console and management API answer according to the VM each node runs
on (powered on, BIOS locked). When the VMs are real (vCenter or vcsim) and the nodes
simulated, this wrapper passes every call to the real adapter and mirrors what it
observes of each VM into the simulated world, where the twins look for it. It records
no effects: the changes are the real vCenter's, not the simulated world's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from adapters.base import BiosState, InventoryEvent, Reservation, VmState, VSphere
from adapters.sim.world import VM, SimWorld
from config.model import Deployment, NodeSpec

__all__ = ["MirroredVSphere"]


class MirroredVSphere:
    def __init__(self, real: VSphere, world: SimWorld) -> None:
        self._real = real
        self._world = world

    async def _mirror(self, vm: VmState, bios: BiosState | None = None) -> None:
        current = self._world.get(VM, vm.name) or {}
        record = {
            **current,
            "name": vm.name,
            "identity": vm.identity,
            "host": vm.host,
            "portgroup": vm.portgroup,
            "power_state": vm.power_state if bios is None else bios.power_state,
            "num_cpus": vm.num_cpus,
            "memory_mb": vm.memory_mb,
            "mirrored_from": "vcenter",
        }
        if bios is not None:
            record["bios"] = {
                "enter_bios_setup": bios.enter_bios_setup,
                "boot_disk_first": bios.boot_disk_first,
                "locked_marker": bios.locked_marker,
            }
        else:
            record.setdefault("bios", {"enter_bios_setup": False, "boot_disk_first": False, "locked_marker": False})
        if record != current:
            await self._world.apply([(VM, vm.name, record)])

    async def preflight(self, deployment: Deployment) -> None:
        await self._real.preflight(deployment)

    async def find_vm(self, node: NodeSpec, identity: str) -> VmState | None:
        vm = await self._real.find_vm(node, identity)
        if vm is not None:
            await self._mirror(vm, await self._real.get_bios(vm))
        return vm

    async def import_ova(self, node: NodeSpec, identity: str, ova: str) -> VmState:
        vm = await self._real.import_ova(node, identity, ova)
        await self._mirror(vm)
        return vm

    async def host_cpu_mhz(self, host: str) -> int:
        return await self._real.host_cpu_mhz(host)

    async def get_reservation(self, vm: VmState) -> Reservation:
        return await self._real.get_reservation(vm)

    async def set_reservation(self, vm: VmState, wanted: Reservation) -> None:
        await self._real.set_reservation(vm, wanted)

    async def datastore_iops_in_use(self, datastore: str, exclude_vm: str) -> int:
        return await self._real.datastore_iops_in_use(datastore, exclude_vm)

    async def get_bios(self, vm: VmState) -> BiosState:
        bios = await self._real.get_bios(vm)
        await self._mirror(vm, bios)
        return bios

    async def lock_bios(self, vm: VmState, password: str) -> None:
        await self._real.lock_bios(vm, password)
        await self._mirror(vm, await self._real.get_bios(vm))

    def watch_inventory(self, pattern: str | None = None, tag: str | None = None) -> AsyncIterator[InventoryEvent]:
        return self._real.watch_inventory(pattern, tag)  # the real inventory: the VMs are real

    def resync(self) -> None:
        self._real.resync()

    async def aclose(self) -> None:
        await self._real.aclose()

    def __getattr__(self, name: str) -> Any:
        # statistics: the real adapter's own extras.
        return getattr(self._real, name)
