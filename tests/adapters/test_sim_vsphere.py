"""The simulated vCenter: imports, reservations, the BIOS lock and preflight."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from _sim_factory import full_reservation, identity, install_manager, make_deployment, make_systems, worker_vm_fields

from adapters import VSphere
from adapters.base import DiskAllocation
from adapters.sim import SimVSphere, SimWorld
from adapters.sim.world import VM
from config.errors import ConfigError, Rejected
from config.model import Deployment


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return make_deployment(3, tmp_path)


@pytest.fixture
def vsphere(world: SimWorld, deployment: Deployment) -> SimVSphere:
    return SimVSphere(world, deployment)


def test_conforms_to_the_protocol(vsphere: SimVSphere) -> None:
    """SimVSphere is a VSphere."""
    assert isinstance(vsphere, VSphere)


async def test_import_creates_the_vm_as_declared(world: SimWorld, vsphere: SimVSphere, deployment: Deployment) -> None:
    """An import makes a powered-off VM with the node's size, one disk, and one effect."""
    mgr = deployment.management
    vm = await vsphere.import_ova(mgr, identity(deployment, mgr), deployment.ova.management)
    assert (vm.name, vm.host, vm.portgroup, vm.power_state) == (mgr.name, mgr.host, mgr.portgroup, "poweredOff")
    assert (vm.num_cpus, vm.memory_mb) == (mgr.cpus, mgr.memory_mb)
    reservation = await vsphere.get_reservation(vm)
    assert reservation.disks == (
        DiskAllocation(2000, "Hard disk 1", deployment.host(mgr.host).datastore, "normal", -1),
    )
    assert await vsphere.find_vm(mgr, identity(deployment, mgr)) == vm
    assert world.effects_summary() == {mgr.name: {"vm_import": 1}}
    assert await vsphere.host_cpu_mhz(mgr.host) == 2400


async def test_import_again_with_our_identity_changes_nothing(
    world: SimWorld, vsphere: SimVSphere, deployment: Deployment
) -> None:
    """A replayed import returns the VM already there, without a second effect."""
    mgr = deployment.management
    first = await vsphere.import_ova(mgr, identity(deployment, mgr), deployment.ova.management)
    again = await vsphere.import_ova(mgr, identity(deployment, mgr), deployment.ova.management)
    assert again == first
    assert world.effects_summary()[mgr.name] == {"vm_import": 1}


@pytest.mark.parametrize(
    ("ova", "other_identity", "message"),
    [
        ("", False, "no OVA given"),  # empty OVA path
        ("mgr.ova", True, "not ours"),  # a VM of that name belongs to someone else
    ],
)
async def test_import_refusals(
    vsphere: SimVSphere, deployment: Deployment, ova: str, other_identity: bool, message: str
) -> None:
    """Imports without an OVA, or over a foreign VM of the same name, are Rejected."""
    mgr = deployment.management
    if other_identity:
        await vsphere.import_ova(mgr, "someone-else/pexip-mgr", "their.ova")
    with pytest.raises(Rejected, match=message):
        await vsphere.import_ova(mgr, identity(deployment, mgr), ova)
    if other_identity:
        with pytest.raises(Rejected, match="not ours"):
            await vsphere.find_vm(mgr, identity(deployment, mgr))


async def test_conferencing_import_needs_its_deployment_file(world: SimWorld, deployment: Deployment) -> None:
    """A Conferencing Node VM can be imported only once the Manager has its worker_vm."""
    systems = make_systems(world, deployment)
    conf = deployment.conferencing[0]
    with pytest.raises(Rejected, match="no deployment file"):
        await systems.vsphere.import_ova(conf, identity(deployment, conf), deployment.ova.conferencing)
    await install_manager(systems, deployment)
    location = await systems.pexip.create("system_location", {"name": "loc"})
    await systems.pexip.create("worker_vm", worker_vm_fields(conf, location.uri))
    vm = await systems.vsphere.import_ova(conf, identity(deployment, conf), deployment.ova.conferencing)
    assert vm.name == conf.name


async def test_reservation_is_replaced_whole(world: SimWorld, vsphere: SimVSphere, deployment: Deployment) -> None:
    """set_reservation stores the full allocation; locking memory reserves all of it."""
    mgr = deployment.management
    vm = await vsphere.import_ova(mgr, identity(deployment, mgr), "mgr.ova")
    wanted = dataclasses.replace(full_reservation(deployment, mgr), memory_reservation_mb=0)
    await vsphere.set_reservation(vm, wanted)
    got = await vsphere.get_reservation(vm)
    assert got == dataclasses.replace(wanted, memory_reservation_mb=mgr.memory_mb)  # locked to max
    assert got.disks[0].iops_limit == mgr.disk_iops_limit
    assert await vsphere.datastore_iops_in_use(got.disks[0].datastore, exclude_vm="other") == mgr.disk_iops_limit
    assert await vsphere.datastore_iops_in_use(got.disks[0].datastore, exclude_vm=mgr.name) == 0
    assert world.effects_summary()[mgr.name]["reservation_set"] == 1


async def test_datastore_iops_follow_every_vm_change(world: SimWorld, vsphere: SimVSphere) -> None:
    """The IOPS in use on a datastore: the limited disks on it of the VMs kept there, but the one excluded, as they
    are now (a limit changed, a VM gone, a disk elsewhere or unlimited)."""

    def vm(*disks: tuple[str, int]) -> dict[str, object]:
        return {
            "datastore": "ds1",
            "disks": [{"key": 2000 + i, "datastore": d, "iops_limit": n} for i, (d, n) in enumerate(disks)],
        }

    await world.apply([(VM, "a", vm(("ds1", 100), ("ds2", 7))), (VM, "b", vm(("ds1", 50), ("ds1", -1)))])
    assert await vsphere.datastore_iops_in_use("ds1", exclude_vm="c") == 150
    assert await vsphere.datastore_iops_in_use("ds1", exclude_vm="a") == 50
    await world.apply([(VM, "b", vm(("ds1", 30), ("ds1", 20))), (VM, "c", vm(("ds1", 5)))])
    assert await vsphere.datastore_iops_in_use("ds1", exclude_vm="x") == 155
    await world.apply([(VM, "a", None), (VM, "partial", {"datastore": "ds1"})])  # a record without disks counts none
    assert await vsphere.datastore_iops_in_use("ds1", exclude_vm="c") == 50


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"cpu_reservation_mhz": 99_999, "cpu_limit_mhz": 99_999},
            "cpu_reservation_mhz 99999 is outside",
        ),  # > vCPUs x MHz
        ({"cpu_limit_mhz": 100}, "below the reservation"),  # limit under reservation
        ({"memory_reservation_mb": 10**6, "memory_locked": False}, "memory_reservation_mb"),  # more than the VM has
        ({"cpu_shares": "lots"}, "cpu_shares 'lots'"),  # unknown shares level
        (
            {"disks": (DiskAllocation(2001, "Hard disk 2", "ds", "normal", 10),)},
            "disk key 2001 does not exist",
        ),  # no such disk
        ({"disks": (DiskAllocation(2000, "Hard disk 1", "ds", "normal", 0),)}, "iops_limit 0"),  # 0 IOPS
    ],
)
async def test_reservation_refusals(
    world: SimWorld, vsphere: SimVSphere, deployment: Deployment, change: dict, message: str
) -> None:
    """Allocations vSphere would refuse are Rejected, and nothing changes."""
    mgr = deployment.management
    vm = await vsphere.import_ova(mgr, identity(deployment, mgr), "mgr.ova")
    before = await vsphere.get_reservation(vm)
    with pytest.raises(Rejected, match=message):
        await vsphere.set_reservation(vm, dataclasses.replace(full_reservation(deployment, mgr), **change))
    assert await vsphere.get_reservation(vm) == before


async def test_lock_bios_keeps_only_a_digest(world: SimWorld, vsphere: SimVSphere, deployment: Deployment) -> None:
    """lock_bios powers on, sets disk first and the marker, and never stores the password."""
    mgr = deployment.management
    vm = await vsphere.import_ova(mgr, identity(deployment, mgr), "mgr.ova")
    before = await vsphere.get_bios(vm)
    assert (before.locked_marker, before.boot_disk_first, before.power_state) == (False, False, "poweredOff")
    await vsphere.lock_bios(vm, "bios-Secret-123")
    after = await vsphere.get_bios(vm)
    assert (after.enter_bios_setup, after.boot_disk_first, after.locked_marker, after.power_state) == (
        False,
        True,
        True,
        "poweredOn",
    )
    assert "bios-Secret-123" not in str(world.get(VM, mgr.name))
    await vsphere.lock_bios(vm, "bios-Secret-123")  # a replay types it again, but powers on once
    assert world.effects_summary()[mgr.name] == {"bios_lock": 2, "power_on": 1, "vm_import": 1}
    world.close()
    assert b"bios-Secret-123" not in (world.path).read_bytes()


async def test_lock_bios_needs_the_vm(vsphere: SimVSphere, deployment: Deployment) -> None:
    """Locking the BIOS of a VM that does not exist is Rejected."""
    mgr = deployment.management
    vm = await vsphere.import_ova(mgr, identity(deployment, mgr), "mgr.ova")
    ghost = dataclasses.replace(vm, name="ghost")
    with pytest.raises(Rejected, match="does not exist"):
        await vsphere.lock_bios(ghost, "pw-12345678")


async def test_preflight_accepts_the_simulated_deployment(vsphere: SimVSphere, deployment: Deployment) -> None:
    """The simulated deployment passes preflight."""
    await vsphere.preflight(deployment)


def _conf(d: Deployment, i: int, **change) -> Deployment:
    conferencing = list(d.conferencing)
    conferencing[i] = dataclasses.replace(conferencing[i], **change)
    return dataclasses.replace(d, conferencing=tuple(conferencing))


def _host(d: Deployment, **change) -> Deployment:
    return dataclasses.replace(
        d, vcenter=dataclasses.replace(d.vcenter, hosts=(dataclasses.replace(d.vcenter.hosts[0], **change),))
    )


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (
            lambda d: dataclasses.replace(d, management=dataclasses.replace(d.management, vlan=4095)),
            "management.vlan",
            "virtual guest tagging",
        ),  # VLAN 4095
        (lambda d: _conf(d, 1, vlan=5000), "conferencing[1].vlan", "outside 0..4094"),  # out of range
        (lambda d: _conf(d, 0, vlan=1002), "conferencing[0].vlan", "reserved_vlans"),  # reserved
        (lambda d: _conf(d, 0, host="esxi-99"), "conferencing[0].host", "not in vcenter.hosts"),  # unknown host
        (
            lambda d: _host(d, vm_network="Management Network"),
            "vcenter.hosts[0].vm_network",
            "management network",
        ),  # VMs on the management network
        (
            lambda d: _host(d, datastore_iops_capacity=2500),
            "vcenter.hosts[0].datastore_iops_capacity",
            "add up to 3000",
        ),  # 3 x 1000 IOPS > 2500
        (
            lambda d: _conf(d, 0, portgroup="Management Network"),
            "conferencing[0].portgroup",
            "management network",
        ),  # a node on the management portgroup
    ],
)
async def test_preflight_names_each_bad_field(
    vsphere: SimVSphere, deployment: Deployment, mutate, field: str, message: str
) -> None:
    """Preflight raises ConfigError with the dotted field of each problem."""
    with pytest.raises(ConfigError) as info:
        await vsphere.preflight(mutate(deployment))
    assert (field, message) in [(f, message) for f, m in info.value.problems if message in m]


async def test_preflight_reports_a_foreign_vm(vsphere: SimVSphere, deployment: Deployment) -> None:
    """A VM of a node's name that this deployment did not create is a preflight problem."""
    mgr = deployment.management
    await vsphere.import_ova(mgr, "other/pexip-mgr", "x.ova")
    with pytest.raises(ConfigError) as info:
        await vsphere.preflight(deployment)
    assert [f for f, _ in info.value.problems] == ["management.name"]
