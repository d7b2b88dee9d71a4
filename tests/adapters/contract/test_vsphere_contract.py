"""The VSphere contract: what every implementation (the twin, VCenter on vcsim) shows through the protocol."""

from __future__ import annotations

import dataclasses

import pytest
from _contract import VSphereCase
from _sim_factory import identity

from adapters.base import Reservation, VmState, VSphere
from config.errors import ConfigError, Rejected
from config.model import Deployment, NodeSpec

FOREIGN = "someone-else/their-vm"  # an identity that is not this deployment's


def _ova(deployment: Deployment) -> str:
    return deployment.ova.management


def _other(deployment: Deployment, name: str) -> NodeSpec:
    """A second node of the Management Node's shape, on the same host (imports like it anywhere)."""
    return dataclasses.replace(deployment.management, name=name)


async def _import(case: VSphereCase, node: NodeSpec) -> VmState:
    return await case.vsphere.import_ova(node, identity(case.deployment, node), _ova(case.deployment))


async def _reserved(case: VSphereCase, vm: VmState, iops: int) -> Reservation:
    """What the guide asks for on ``vm``: everything reserved, limits = reservations, ``iops`` per disk."""
    mhz = await case.vsphere.host_cpu_mhz(vm.host)
    current = await case.vsphere.get_reservation(vm)
    return dataclasses.replace(
        current,
        cpu_reservation_mhz=vm.num_cpus * mhz,
        cpu_limit_mhz=vm.num_cpus * mhz,
        cpu_shares="normal",
        memory_reservation_mb=vm.memory_mb,
        memory_limit_mb=vm.memory_mb,
        memory_shares="normal",
        memory_locked=True,
        disks=tuple(dataclasses.replace(d, shares="normal", iops_limit=iops) for d in current.disks),
    )


def test_is_a_vsphere(vsphere_reader: VSphereCase) -> None:
    """The implementation satisfies the VSphere protocol."""
    assert isinstance(vsphere_reader.vsphere, VSphere)


async def test_find_vm_of_a_missing_vm_is_none(vsphere_reader: VSphereCase) -> None:
    """A node whose VM was never imported is not found, and that is not an error."""
    node = _other(vsphere_reader.deployment, "pexip-contract-never-imported")
    assert await vsphere_reader.vsphere.find_vm(node, identity(vsphere_reader.deployment, node)) is None


async def test_host_cpu_mhz(vsphere_reader: VSphereCase) -> None:
    """A declared host reports a core speed; an unknown host is Rejected."""
    assert await vsphere_reader.vsphere.host_cpu_mhz(vsphere_reader.deployment.management.host) > 0
    with pytest.raises(Rejected):
        await vsphere_reader.vsphere.host_cpu_mhz("no-such-host")


async def test_import_then_find_by_identity(vsphere_case: VSphereCase) -> None:
    """An import makes a powered-off VM of the node's size on its host and portgroup, found by identity."""
    node = vsphere_case.deployment.management
    vm = await _import(vsphere_case, node)
    assert (vm.name, vm.identity, vm.host, vm.portgroup, vm.power_state) == (
        node.name,
        identity(vsphere_case.deployment, node),
        node.host,
        node.portgroup,
        "poweredOff",
    )
    assert (vm.num_cpus, vm.memory_mb) == (node.cpus, node.memory_mb)
    assert await vsphere_case.vsphere.find_vm(node, identity(vsphere_case.deployment, node)) == vm


async def test_a_second_import_returns_the_same_vm(vsphere_case: VSphereCase) -> None:
    """Importing a node whose VM is already ours returns that VM, not a second one."""
    node = vsphere_case.deployment.management
    first = await _import(vsphere_case, node)
    assert await _import(vsphere_case, node) == first
    assert await vsphere_case.vsphere.find_vm(node, identity(vsphere_case.deployment, node)) == first


async def test_a_vm_of_our_name_that_is_not_ours_is_never_adopted(vsphere_case: VSphereCase) -> None:
    """find_vm and import_ova refuse a VM of the node's name with another identity, and leave it as it was."""
    node, vsphere = vsphere_case.deployment.management, vsphere_case.vsphere
    theirs = await vsphere.import_ova(node, FOREIGN, _ova(vsphere_case.deployment))
    with pytest.raises(Rejected, match=f"VM named '{node.name}'"):
        await vsphere.find_vm(node, identity(vsphere_case.deployment, node))
    with pytest.raises(Rejected, match=f"VM named '{node.name}'"):
        await vsphere.import_ova(node, identity(vsphere_case.deployment, node), _ova(vsphere_case.deployment))
    assert await vsphere.find_vm(node, FOREIGN) == theirs


async def test_a_fresh_import_is_unreserved_and_unlimited(vsphere_case: VSphereCase) -> None:
    """Before set_reservation nothing is reserved and nothing limited, disks included."""
    vm = await _import(vsphere_case, vsphere_case.deployment.management)
    got = await vsphere_case.vsphere.get_reservation(vm)
    assert (
        got.cpu_reservation_mhz,
        got.cpu_limit_mhz,
        got.memory_reservation_mb,
        got.memory_limit_mb,
        got.memory_locked,
    ) == (0, -1, 0, -1, False)
    assert got.disks and all(d.iops_limit == -1 for d in got.disks)


async def test_set_then_get_reservation(vsphere_case: VSphereCase) -> None:
    """get_reservation returns the complete allocation set_reservation applied, disks included."""
    vm = await _import(vsphere_case, vsphere_case.deployment.management)
    wanted = await _reserved(vsphere_case, vm, iops=800)
    await vsphere_case.vsphere.set_reservation(vm, wanted)
    assert await vsphere_case.vsphere.get_reservation(vm) == wanted


async def test_a_reservation_is_replaced_whole(vsphere_case: VSphereCase) -> None:
    """A second, different allocation replaces the first in every field, not only the changed ones."""
    vm = await _import(vsphere_case, vsphere_case.deployment.management)
    first = await _reserved(vsphere_case, vm, iops=800)
    await vsphere_case.vsphere.set_reservation(vm, first)
    second = dataclasses.replace(
        first,
        cpu_reservation_mhz=first.cpu_reservation_mhz // 2,
        cpu_limit_mhz=-1,
        memory_locked=False,
        memory_reservation_mb=vm.memory_mb // 2,
        memory_limit_mb=-1,
        disks=tuple(dataclasses.replace(d, iops_limit=400) for d in first.disks),
    )
    await vsphere_case.vsphere.set_reservation(vm, second)
    assert await vsphere_case.vsphere.get_reservation(vm) == second


async def test_setting_the_reservation_again_is_harmless(vsphere_case: VSphereCase) -> None:
    """set_reservation with the allocation already in place succeeds and changes nothing."""
    vm = await _import(vsphere_case, vsphere_case.deployment.management)
    wanted = await _reserved(vsphere_case, vm, iops=800)
    await vsphere_case.vsphere.set_reservation(vm, wanted)
    await vsphere_case.vsphere.set_reservation(vm, wanted)
    assert await vsphere_case.vsphere.get_reservation(vm) == wanted
    assert await vsphere_case.vsphere.find_vm(vsphere_case.deployment.management, vm.identity) == vm


async def test_a_reservation_for_a_missing_disk_is_rejected(vsphere_case: VSphereCase) -> None:
    """An allocation naming a disk the VM does not have is Rejected and changes nothing."""
    vm = await _import(vsphere_case, vsphere_case.deployment.management)
    before = await vsphere_case.vsphere.get_reservation(vm)
    wanted = await _reserved(vsphere_case, vm, iops=800)
    ghost = dataclasses.replace(wanted.disks[0], key=max(d.key for d in wanted.disks) + 99)
    with pytest.raises(Rejected, match=str(ghost.key)):
        await vsphere_case.vsphere.set_reservation(vm, dataclasses.replace(wanted, disks=(*wanted.disks, ghost)))
    assert await vsphere_case.vsphere.get_reservation(vm) == before


async def test_datastore_iops_in_use_leaves_out_the_named_vm(vsphere_case: VSphereCase) -> None:
    """The IOPS limits on a datastore are summed over every VM but the one named."""
    deployment, vsphere = vsphere_case.deployment, vsphere_case.vsphere
    one = await _import(vsphere_case, _other(deployment, "pexip-contract-1"))
    two = await _import(vsphere_case, _other(deployment, "pexip-contract-2"))
    await vsphere.set_reservation(one, await _reserved(vsphere_case, one, iops=700))
    await vsphere.set_reservation(two, await _reserved(vsphere_case, two, iops=300))
    datastore = (await vsphere.get_reservation(one)).disks[0].datastore
    assert datastore == deployment.host(one.host).datastore
    assert await vsphere.datastore_iops_in_use(datastore, exclude_vm="pexip-contract-none") == 1000
    assert await vsphere.datastore_iops_in_use(datastore, exclude_vm=one.name) == 300
    assert await vsphere.datastore_iops_in_use(datastore, exclude_vm=two.name) == 700


async def test_lock_bios_sets_the_marker_and_disk_first(vsphere_case: VSphereCase) -> None:
    """Before the lock no marker and the VM off; after it disk first, setup not forced, powered on, marked."""
    vm = await _import(vsphere_case, vsphere_case.deployment.management)
    before = await vsphere_case.vsphere.get_bios(vm)
    assert (before.locked_marker, before.power_state) == (False, "poweredOff")
    password = vsphere_case.deployment.bios.password
    assert password is not None
    await vsphere_case.vsphere.lock_bios(vm, password.reveal())
    after = await vsphere_case.vsphere.get_bios(vm)
    assert (after.enter_bios_setup, after.boot_disk_first, after.power_state, after.locked_marker) == (
        False,
        True,
        "poweredOn",
        True,
    )


async def test_locking_the_bios_again_is_harmless(vsphere_case: VSphereCase) -> None:
    """A second lock_bios of a locked, running VM succeeds and leaves it locked, running and the same VM."""
    node = vsphere_case.deployment.management
    vm = await _import(vsphere_case, node)
    password = vsphere_case.deployment.bios.password
    assert password is not None
    await vsphere_case.vsphere.lock_bios(vm, password.reveal())
    locked = await vsphere_case.vsphere.get_bios(vm)
    await vsphere_case.vsphere.lock_bios(vm, password.reveal())
    assert await vsphere_case.vsphere.get_bios(vm) == locked
    again = await vsphere_case.vsphere.find_vm(node, vm.identity)
    assert again is not None and (again.moref, again.power_state) == (vm.moref, "poweredOn")


async def test_power_off_leaves_the_vm_off_and_is_harmless_again(vsphere_case: VSphereCase) -> None:
    """power_off of a running VM (after its BIOS lock) shows it poweredOff, as find_vm does; again: the same."""
    node = vsphere_case.deployment.management
    vm = await _import(vsphere_case, node)
    password = vsphere_case.deployment.bios.password
    assert password is not None
    await vsphere_case.vsphere.lock_bios(vm, password.reveal())
    off = await vsphere_case.vsphere.power_off(vm)
    assert (off.moref, off.power_state) == (vm.moref, "poweredOff")
    found = await vsphere_case.vsphere.find_vm(node, vm.identity)
    assert found is not None and found.power_state == "poweredOff"
    assert await vsphere_case.vsphere.power_off(vm) == off


async def test_preflight_accepts_the_deployment(vsphere_reader: VSphereCase) -> None:
    """The deployment the world was made for passes preflight."""
    await vsphere_reader.vsphere.preflight(vsphere_reader.deployment)


@pytest.mark.parametrize("vlan", [4095, 5000])  # virtual guest tagging; outside 0..4094
async def test_preflight_names_a_bad_vlan(vsphere_reader: VSphereCase, vlan: int) -> None:
    """A node on an impossible VLAN is a ConfigError naming that node's vlan field."""
    deployment = vsphere_reader.deployment
    conferencing = (dataclasses.replace(deployment.conferencing[0], vlan=vlan), *deployment.conferencing[1:])
    with pytest.raises(ConfigError) as info:
        await vsphere_reader.vsphere.preflight(dataclasses.replace(deployment, conferencing=conferencing))
    assert "conferencing[0].vlan" in [f for f, _ in info.value.problems]


async def test_preflight_names_a_foreign_vm_of_a_nodes_name(vsphere_case: VSphereCase) -> None:
    """A VM of a node's name that this deployment did not create is a preflight problem on that node's name."""
    node = vsphere_case.deployment.management
    await vsphere_case.vsphere.import_ova(node, FOREIGN, _ova(vsphere_case.deployment))
    with pytest.raises(ConfigError) as info:
        await vsphere_case.vsphere.preflight(vsphere_case.deployment)
    assert "management.name" in [f for f, _ in info.value.problems]


async def test_aclose_is_idempotent(vsphere_reader: VSphereCase) -> None:
    """aclose after use, and again, raises nothing (the fixture closes a third time)."""
    await vsphere_reader.vsphere.find_vm(vsphere_reader.deployment.management, "x/y")
    await vsphere_reader.vsphere.aclose()
    await vsphere_reader.vsphere.aclose()


async def test_watch_inventory_reports_a_new_vm(vsphere_case: VSphereCase) -> None:
    """A VM imported while the watch runs is reported as ``enter`` with its moref and our identity;
    VMs whose name does not match the pattern are not reported."""
    import asyncio
    import contextlib

    from adapters.base import InventoryEvent

    node = _other(vsphere_case.deployment, "pexip-contract-watched")
    events: asyncio.Queue[InventoryEvent] = asyncio.Queue()

    async def pump() -> None:
        async for event in vsphere_case.vsphere.watch_inventory(pattern="pexip-contract-watch*"):
            events.put_nowait(event)

    task = asyncio.ensure_future(pump())
    try:
        await asyncio.sleep(0.3)  # the first (full) update: nothing of that name yet
        assert events.empty()
        vm = await _import(vsphere_case, node)
        while True:
            event = await asyncio.wait_for(events.get(), timeout=60)  # a bound on a hang, not on how soon
            if event.kind == "enter" and event.name == node.name:
                break
        assert event.moref == vm.moref
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
