"""The simulated vCenter/ESXi: a twin of :class:`adapters.base.VSphere` over the world.

VMs are kept by name (system ``vsphere:vm``) with the identity tag, host, portgroup,
power state, CPU/memory/disk allocation and what the BIOS shows. It refuses what vSphere
or the guide would refuse: a foreign VM of the same name, an OVA import without a file, a
Conferencing Node imported before the Management Node made its deployment file, a
reservation above what the VM has.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any, cast

from adapters.base import BiosState, DiskAllocation, InventoryEvent, Reservation, VmState
from adapters.sim._inventory_watch import vms_changed, watch_world_vms
from adapters.sim.world import VM, Effect, SimWorld, digest, pexip_system
from config.errors import ConfigError, Rejected
from config.model import CONFERENCING, Deployment, NodeSpec
from config.rules import disk_iops_limit_problem, iops_over_budget, vlan_problem

__all__ = ["SimVSphere", "HOST_CPU_MHZ"]

_SYSTEM = "vsphere"
_COUNTERS = "vsphere:_next"
HOST_CPU_MHZ = 2400  # every simulated host's core speed
_SHARES = ("low", "normal", "high", "custom")


class SimVSphere:
    """Twin of :class:`adapters.base.VSphere` over a :class:`SimWorld`."""

    def __init__(self, world: SimWorld, deployment: Deployment):
        self._world = world
        self._deployment = deployment

    async def preflight(self, deployment: Deployment) -> None:
        """Check VLANs, hosts, networks and the IOPS budget of every datastore.

        Raises:
            ConfigError: every problem, each with its dotted field (``conferencing[2].vlan``).
        """
        await self._world.call(_SYSTEM, "preflight", change=False)
        problems = _preflight_problems(deployment)
        for prefix, node in _node_fields(deployment):
            vm = self._world.get(VM, node.name)
            ours = f"{deployment.name}/{node.name}"
            if vm is not None and vm["identity"] != ours:
                problems.append(
                    (
                        f"{prefix}.name",
                        f"a VM named {node.name!r} ({vm['moref']}) exists that this "
                        f"deployment did not create (identity {vm['identity']!r}); it is never adopted: "
                        "rename or remove it, or rename the node",
                    )
                )
        if problems:
            raise ConfigError(problems)

    async def find_vm(self, node: NodeSpec, identity: str) -> VmState | None:
        await self._world.call(_SYSTEM, f"find {node.name}", change=False)
        vm = self._world.get(VM, node.name)
        if vm is None:
            return None
        _check_ours(vm, identity)
        return _state(vm)

    async def import_ova(self, node: NodeSpec, identity: str, ova: str) -> VmState:
        """Import ``ova`` as ``node``; an existing VM with our identity is returned as is."""
        await self._world.call(_SYSTEM, f"import {node.name}", change=True)
        existing = self._world.get(VM, node.name)
        if existing is not None:
            _check_ours(existing, identity)
            return _state(existing)
        if not ova:
            raise Rejected(
                f"cannot import {node.name}: no OVA given; set ova.{node.role} to the OVA file", system=_SYSTEM
            )
        try:
            host = self._deployment.host(node.host)
        except KeyError:
            raise Rejected(
                f"cannot import {node.name}: host {node.host!r} is not in vcenter.hosts", system=_SYSTEM
            ) from None
        if node.role == CONFERENCING and not self._world.lookup(pexip_system("worker_vm"), "name", node.name):
            raise Rejected(
                f"cannot import {node.name}: no deployment file for it: the Management Node has no worker_vm "
                f"named {node.name!r} yet; create the worker_vm first",
                system=_SYSTEM,
            )
        number = int(self._world.get(_COUNTERS, "vm", 1))
        vm = {
            "name": node.name,
            "identity": identity,
            "moref": f"vm-{number}",
            "host": host.name,
            "portgroup": node.portgroup,
            "vlan": node.vlan,
            "datastore": host.datastore,
            "ova": ova,
            "power_state": "poweredOff",
            "num_cpus": node.cpus,
            "memory_mb": node.memory_mb,
            "reservation": {
                "cpu_reservation_mhz": 0,
                "cpu_limit_mhz": -1,
                "cpu_shares": "normal",
                "memory_reservation_mb": 0,
                "memory_limit_mb": -1,
                "memory_shares": "normal",
                "memory_locked": False,
            },
            "disks": [
                {"key": 2000, "label": "Hard disk 1", "datastore": host.datastore, "shares": "normal", "iops_limit": -1}
            ],
            "bios": {
                "enter_bios_setup": False,
                "boot_disk_first": False,
                "locked_marker": False,
                "password_sha256": None,
            },
        }
        await self._world.apply(
            [(VM, node.name, vm), (_COUNTERS, "vm", number + 1)], [Effect(node.name, "vm_import", ova)]
        )
        vms_changed(self._world)  # the inventory watches see the new VM now, as vCenter's next update
        return _state(vm)

    async def host_cpu_mhz(self, host: str) -> int:
        await self._world.call(_SYSTEM, f"host {host}", change=False)
        if host not in {h.name for h in self._deployment.vcenter.hosts}:
            raise Rejected(f"host {host!r} is not in vcenter.hosts", system=_SYSTEM)
        return HOST_CPU_MHZ

    async def get_reservation(self, vm: VmState) -> Reservation:
        await self._world.call(_SYSTEM, f"get reservation of {vm.name}", change=False)
        stored = self._vm(vm)
        disks = tuple(DiskAllocation(**d) for d in stored["disks"])
        return Reservation(**stored["reservation"], disks=disks)

    async def set_reservation(self, vm: VmState, wanted: Reservation) -> None:
        """Replace the whole allocation (vSphere replaces partial structs anyway)."""
        await self._world.call(_SYSTEM, f"reconfigure {vm.name}", change=True)
        stored = self._vm(vm)
        problems = _reservation_problems(stored, wanted)
        if problems:
            raise Rejected(f"reconfigure of {vm.name} refused: {'; '.join(problems)}", system=_SYSTEM)
        reservation = {k: v for k, v in asdict(wanted).items() if k != "disks"}
        if wanted.memory_locked:
            # memoryReservationLockedToMax: vSphere reserves all guest memory itself.
            reservation["memory_reservation_mb"] = stored["memory_mb"]
        by_key = {d.key: d for d in wanted.disks}
        disks = [
            {**d, "shares": by_key[d["key"]].shares, "iops_limit": by_key[d["key"]].iops_limit}
            if d["key"] in by_key
            else d
            for d in stored["disks"]
        ]
        await self._world.apply(
            [(VM, vm.name, {**stored, "reservation": reservation, "disks": disks})],
            [Effect(vm.name, "reservation_set", "")],
        )

    async def datastore_iops_in_use(self, datastore: str, exclude_vm: str) -> int:
        await self._world.call(_SYSTEM, f"datastore {datastore}", change=False)
        # Every VM kept on the datastore counts on each call (issue #11: 32,000 VMs summed per 1000 nodes): each one's
        # sum kept aside by the world (derived), not each VM read through its bounded cache, evicting the rest.
        home_iops = self._world.derived(VM, "home_datastore_iops", _home_datastore_iops)
        total = 0
        for name in self._world.lookup(VM, "datastore", datastore):
            if name != exclude_vm:
                total += home_iops[name]
        return total

    async def get_bios(self, vm: VmState) -> BiosState:
        await self._world.call(_SYSTEM, f"get boot options of {vm.name}", change=False)
        stored = self._vm(vm)
        bios = stored["bios"]
        return BiosState(
            enter_bios_setup=bios["enter_bios_setup"],
            boot_disk_first=bios["boot_disk_first"],
            power_state=stored["power_state"],
            locked_marker=bios["locked_marker"],
        )

    async def lock_bios(self, vm: VmState, password: str) -> None:
        """Force BIOS setup, disk first, power on, set the supervisor password, save.
        Only a digest of ``password`` is kept.

        Like the real adapter, the "typing" marker (``bios["lock"]``) is set right before the
        first key: a VM found running with it was interrupted while typing and needs the
        operator; a crash before it (arming, power-on) is retried by itself.
        """
        await self._world.call(_SYSTEM, f"lock BIOS of {vm.name}", change=True)
        stored = self._vm(vm)
        if not password:
            raise Rejected(
                f"cannot lock the BIOS of {vm.name}: the supervisor password is empty; set bios.password",
                system=_SYSTEM,
            )
        if stored["bios"].get("lock") == "typing" and stored["power_state"] != "poweredOff":
            raise Rejected(
                f"the BIOS lock of VM {vm.name} was interrupted while its password was being typed; open its console: "
                "if the BIOS asks for a password, the lock is done, else power the VM off and run again",
                system=_SYSTEM,
            )
        armed = {**stored["bios"], "enter_bios_setup": True, "boot_disk_first": True}
        effects = [] if stored["power_state"] == "poweredOn" else [Effect(vm.name, "power_on", "")]
        await self._world.apply([(VM, vm.name, {**stored, "bios": armed, "power_state": "poweredOn"})], effects)
        await self._mark_typing(vm)
        await self._type_password(vm, password)

    async def _mark_typing(self, vm: VmState) -> None:
        """Right before the first key: from here on only the console can tell."""
        stored = self._vm(vm)
        await self._world.apply([(VM, vm.name, {**stored, "bios": {**stored["bios"], "lock": "typing"}})])

    async def _type_password(self, vm: VmState, password: str) -> None:
        """The keys, saved: the password set, setup left, the disk first, the marker "done"."""
        stored = self._vm(vm)
        bios = {
            "enter_bios_setup": False,
            "boot_disk_first": True,
            "locked_marker": True,
            "password_sha256": digest(password),
            "lock": "done",
        }
        await self._world.apply([(VM, vm.name, {**stored, "bios": bios})], [Effect(vm.name, "bios_lock", "")])

    async def watch_inventory(
        self, pattern: str | None = None, tag: str | None = None
    ) -> AsyncIterator[InventoryEvent]:
        """The world's VMs matching ``pattern`` (default ``vcenter.name_pattern``): an ``enter`` for
        each one there, then each change (a VM imported wakes the watch at once)."""
        spec = self._deployment.vcenter
        async for event in watch_world_vms(
            self._world, pattern=pattern or spec.name_pattern, tag=tag if tag is not None else spec.tag
        ):
            yield event

    def resync(self) -> None:
        """Nothing is kept: every call reads the world."""

    async def power_off(self, vm: VmState) -> VmState:
        """Power ``vm`` off (vCenter's Power Off); one already off changes nothing."""
        await self._world.call(_SYSTEM, f"power off {vm.name}", change=True)
        stored = self._vm(vm)
        if stored["power_state"] != "poweredOff":
            off = {**stored, "power_state": "poweredOff"}
            await self._world.apply([(VM, vm.name, off)], [Effect(vm.name, "power_off", "")])
        return _state(self._vm(vm))

    async def aclose(self) -> None:
        """Nothing to release: the state is in the world."""

    async def __aenter__(self) -> SimVSphere:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _vm(self, vm: VmState) -> dict[str, Any]:
        stored = self._world.get(VM, vm.name)
        if stored is None:
            raise Rejected(f"VM {vm.name} ({vm.moref}) does not exist; import it first", system=_SYSTEM)
        _check_ours(stored, vm.identity)
        return cast(dict[str, Any], stored)


def _home_datastore_iops(vm: Any) -> int:
    """The IOPS limits of a VM's disks on the datastore it is kept on (an unlimited disk counts none).

    Kept by every write of a VM record, whoever writes it (a test, the bridge): what is not a VM's counts none."""
    if not isinstance(vm, dict):
        return 0
    home = vm.get("datastore")
    return sum(
        d.get("iops_limit", 0)
        for d in vm.get("disks", ())
        if isinstance(d, dict) and d.get("datastore") == home and d.get("iops_limit", 0) > 0
    )


def _check_ours(vm: dict[str, Any], identity: str) -> None:
    if vm["identity"] != identity:
        raise Rejected(
            f"a VM named {vm['name']!r} exists ({vm['moref']}) but it is not ours: its identity is "
            f"{vm['identity']!r}, ours is {identity!r}; rename or remove that VM, or pick another node name",
            system=_SYSTEM,
        )


def _state(vm: dict[str, Any]) -> VmState:
    return VmState(
        name=vm["name"],
        identity=vm["identity"],
        moref=vm["moref"],
        host=vm["host"],
        portgroup=vm["portgroup"],
        power_state=vm["power_state"],
        num_cpus=vm["num_cpus"],
        memory_mb=vm["memory_mb"],
    )


def _reservation_problems(vm: dict[str, Any], wanted: Reservation) -> list[str]:
    problems = []
    cpu_max = vm["num_cpus"] * HOST_CPU_MHZ
    if not 0 <= wanted.cpu_reservation_mhz <= cpu_max:
        problems.append(
            f"cpu_reservation_mhz {wanted.cpu_reservation_mhz} is outside 0..{cpu_max} "
            f"({vm['num_cpus']} vCPUs x {HOST_CPU_MHZ} MHz)"
        )
    if wanted.cpu_limit_mhz != -1 and wanted.cpu_limit_mhz < wanted.cpu_reservation_mhz:
        problems.append(f"cpu_limit_mhz {wanted.cpu_limit_mhz} is below the reservation {wanted.cpu_reservation_mhz}")
    if not 0 <= wanted.memory_reservation_mb <= vm["memory_mb"]:
        problems.append(f"memory_reservation_mb {wanted.memory_reservation_mb} is outside 0..{vm['memory_mb']}")
    reserved = vm["memory_mb"] if wanted.memory_locked else wanted.memory_reservation_mb
    if wanted.memory_limit_mb != -1 and wanted.memory_limit_mb < reserved:
        problems.append(f"memory_limit_mb {wanted.memory_limit_mb} is below the reservation {reserved}")
    for name in ("cpu_shares", "memory_shares"):
        if getattr(wanted, name) not in _SHARES:
            problems.append(f"{name} {getattr(wanted, name)!r} is not one of {', '.join(_SHARES)}")
    keys = {d["key"] for d in vm["disks"]}
    for disk in wanted.disks:
        if disk.key not in keys:
            problems.append(f"disk key {disk.key} does not exist (the VM has {sorted(keys)})")
        if disk.shares not in _SHARES:
            problems.append(f"disk {disk.key} shares {disk.shares!r} is not one of {', '.join(_SHARES)}")
        if disk.iops_limit != -1 and disk.iops_limit <= 0:
            problems.append(f"disk {disk.key} iops_limit {disk.iops_limit} must be -1 (unlimited) or > 0")
    return problems


def _node_fields(deployment: Deployment) -> list[tuple[str, NodeSpec]]:
    """Each node with its place in the deployment file (``management``, ``conferencing[i]``)."""
    return [("management", deployment.management)] + [
        (f"conferencing[{i}]", n) for i, n in enumerate(deployment.conferencing)
    ]


def _preflight_problems(deployment: Deployment) -> list[tuple[str, str]]:
    policy = deployment.policy
    reserved = set(deployment.vcenter.reserved_vlans)
    hosts = {h.name: h for h in deployment.vcenter.hosts}
    problems: list[tuple[str, str]] = []
    for i, host in enumerate(deployment.vcenter.hosts):
        if host.vm_network == host.management_network:
            problems.append(
                (
                    f"vcenter.hosts[{i}].vm_network",
                    f"{host.vm_network!r} is also the host's management network; the guide requires VMs "
                    "on a separate physical network: set vm_network to another portgroup/switch",
                )
            )
    iops: dict[str, list[int]] = defaultdict(list)
    users: dict[str, list[str]] = defaultdict(list)
    for prefix, node in _node_fields(deployment):
        if (message := vlan_problem(node.vlan, policy.vlan, reserved)) is not None:
            problems.append((f"{prefix}.vlan", message))
        on = hosts.get(node.host)
        if on is None:
            problems.append(
                (f"{prefix}.host", f"host {node.host!r} is not in vcenter.hosts (known: {', '.join(hosts) or 'none'})")
            )
            continue
        if node.portgroup == on.management_network:
            problems.append(
                (
                    f"{prefix}.portgroup",
                    f"{node.portgroup!r} is the management network of host {on.name}; put the VM on {on.vm_network!r}",
                )
            )
        if (message := disk_iops_limit_problem(node.disk_iops_limit, policy.reservation)) is not None:
            problems.append((f"{prefix}.disk_iops_limit", message))
        iops[on.datastore].append(node.disk_iops_limit)
        users[on.datastore].append(node.name)
    for i, host in enumerate(deployment.vcenter.hosts):
        # pop: a shared datastore is reported once
        total = iops_over_budget(iops.pop(host.datastore, []), host.datastore_iops_capacity)
        if total is not None:
            problems.append(
                (
                    f"vcenter.hosts[{i}].datastore_iops_capacity",
                    f"the IOPS limits of the disks on datastore {host.datastore!r} add up to {total} "
                    f"({len(users[host.datastore])} nodes), above its capacity "
                    f"{host.datastore_iops_capacity}; lower the nodes' disk_iops_limit or move nodes",
                )
            )
    return problems
