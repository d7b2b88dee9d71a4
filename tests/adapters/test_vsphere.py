"""The real vSphere adapter against vcsim: deployed, reserved, bios_locked, and a rerun that changes nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from _vcsim import VM_STEPS, WRITES, admin, identity, run_step, vcenter, writes
from pyVmomi import vim

from adapters.base import VSphere
from adapters.vsphere import IDENTITY_FIELD, VCenter
from config.errors import Rejected
from config.model import Deployment
from orchestrator.lab import Vcsim, make_test_ova

pytestmark = pytest.mark.vcsim


def _writes(vc: Vcsim, since: int = 0) -> list[str]:
    """``writes`` and the batched power-on, which ``_vcsim.WRITES`` does not list yet."""
    calls = [r["method"] for r in vc.requests()[since:]]
    return [m for m in calls if m in WRITES or m == "PowerOnMultiVM_Task"]


def _adopt(vc: Vcsim, vm_name: str, value: str) -> None:
    """Give a VM of vcsim's default inventory our identity, as if this deployment had made it."""
    with admin(vc) as content:
        fields = content.customFieldsManager
        key = next((f.key for f in fields.field if f.name == IDENTITY_FIELD), None)
        if key is None:
            key = fields.AddCustomFieldDef(name=IDENTITY_FIELD, moType=vim.VirtualMachine).key
        vm = content.searchIndex.FindByInventoryPath(f"DC0/vm/{vm_name}")
        fields.SetField(entity=vm, key=key, value=value)


async def test_is_a_vsphere_adapter(deployment: Deployment) -> None:
    """VCenter implements the VSphere protocol of adapters.base."""
    async with vcenter(deployment) as vc:
        assert isinstance(vc, VSphere)


async def test_every_step_on_an_imported_ova_then_a_rerun_changes_nothing(vcsim: Vcsim, deployment: Deployment) -> None:
    """The Management Node goes through deployed, reserved and bios_locked; a second run sends no write at all."""
    node = deployment.management
    async with vcenter(deployment) as vc:
        await vc.preflight(deployment)
        changed = {name: (await run_step(name, deployment, node, vc)).changes for name in VM_STEPS}
        assert all(changed.values()), changed
        first = len(vcsim.requests())
        again = {name: (await run_step(name, deployment, node, vc)).changes for name in VM_STEPS}
        assert again == {name: () for name in VM_STEPS}
        assert _writes(vcsim, first) == []
        vm = await vc.find_vm(node, identity(deployment, node))
        assert vm is not None
        reservation = await vc.get_reservation(vm)
        bios = await vc.get_bios(vm)
        assert vc.statistics()["logins"] == 1
    core = 2294  # vcsim's summary.hardware.cpuMhz
    assert (vm.name, vm.host, vm.portgroup, vm.num_cpus, vm.memory_mb) == (
        node.name,
        node.host,
        node.portgroup,
        4,
        8192,
    )
    assert (reservation.cpu_reservation_mhz, reservation.cpu_limit_mhz, reservation.cpu_shares) == (
        4 * core,
        4 * core,
        "normal",
    )
    assert (reservation.memory_reservation_mb, reservation.memory_limit_mb, reservation.memory_shares) == (
        8192,
        8192,
        "normal",
    )
    assert reservation.memory_locked
    assert [(d.shares, d.iops_limit, d.datastore) for d in reservation.disks] == [
        ("normal", node.disk_iops_limit, "LocalDS_0")
    ]
    assert bios == type(bios)(enter_bios_setup=False, boot_disk_first=True, power_state="poweredOn", locked_marker=True)
    with admin(vcsim) as content:
        imported = content.searchIndex.FindByInventoryPath(f"DC0/vm/pexip/{node.name}")
        assert imported is not None, "the VM is in the configured folder"


async def test_each_step_on_the_default_inventory(vcsim: Vcsim, deployment: Deployment) -> None:
    """A running VM of vcsim's own inventory (pvscsi disk, powered on) is reserved and BIOS-locked."""
    node = dataclasses.replace(deployment.conferencing[0], name="DC0_H0_VM0", cpus=1, memory_mb=32)
    _adopt(vcsim, "DC0_H0_VM0", identity(deployment, node))
    async with vcenter(deployment) as vc:
        assert (await run_step("deploy_ova", deployment, node, vc)).changes == ()
        assert (await run_step("reserve_resources", deployment, node, vc)).changes
        assert (await run_step("lock_bios", deployment, node, vc)).changes
        vm = await vc.find_vm(node, identity(deployment, node))
        assert vm is not None
        reservation = await vc.get_reservation(vm)
    calls = [r["method"] for r in vcsim.requests()]
    assert "ImportVApp" not in calls
    assert "ResetVM_Task" in calls, "a running VM is reset into BIOS setup"
    assert reservation.cpu_reservation_mhz == reservation.cpu_limit_mhz == vm.num_cpus * 2294
    assert reservation.memory_reservation_mb == reservation.memory_limit_mb == vm.memory_mb
    assert [d.iops_limit for d in reservation.disks] == [node.disk_iops_limit]


async def test_a_vm_of_our_name_that_is_not_ours_is_never_adopted(vcsim: Vcsim, deployment: Deployment) -> None:
    """find_vm and import_ova refuse a foreign VM of the node's name, and nothing is written."""
    node = dataclasses.replace(deployment.management, name="DC0_H0_VM1")
    async with vcenter(deployment) as vc:
        with pytest.raises(Rejected, match="never adopted"):
            await vc.find_vm(node, identity(deployment, node))
        with pytest.raises(Rejected, match="never adopted"):
            await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
    assert writes(vcsim) == []


async def test_an_interrupted_import_is_replaced(vcsim: Vcsim, deployment: Deployment) -> None:
    """A VM born of our import whose lease never completed is not found as ours, then replaced by a full import."""
    node = deployment.management
    ident = identity(deployment, node)
    with admin(vcsim) as content:
        # What a crash between ImportVApp and the identity attribute leaves: extraConfig only.
        folder = content.searchIndex.FindByInventoryPath("DC0/vm/pexip")
        pool = content.searchIndex.FindByInventoryPath("DC0/host/DC0_H0/Resources")
        spec = vim.vm.ConfigSpec(
            name=node.name,
            guestId="otherGuest",
            numCPUs=1,
            memoryMB=32,
            files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"),
            extraConfig=[vim.option.OptionValue(key="pexip-orchestrator.identity", value=ident)],
        )
        task = folder.CreateVM_Task(config=spec, pool=pool)
        assert task.info.state == "success"
        half = task.info.result._moId
    async with vcenter(deployment) as vc:
        assert await vc.find_vm(node, ident) is None
        vm = await vc.import_ova(node, ident, deployment.ova.management)
        assert vm.moref != half
        assert await vc.find_vm(node, ident) == vm
    assert writes(vcsim).count("Destroy_Task") == 1


async def test_reads_are_batched(vcsim: Vcsim, deployment: Deployment, tmp_path: Path) -> None:
    """Ten VMs observed at once cost a couple of property reads, not one per VM or per attribute."""
    import asyncio

    async with vcenter(deployment) as vc:  # every observation reads anew (no reuse window since #11)
        nodes = [dataclasses.replace(deployment.management, name=f"pexip-batch-{i}") for i in range(10)]
        ova = str(make_test_ova(tmp_path / "batch.ova"))
        await asyncio.gather(*(vc.import_ova(n, identity(deployment, n), ova) for n in nodes))
        before = vc.statistics()["by_method"].get("RetrievePropertiesEx", 0)
        briefs_before = vc.statistics()["inventory_reads"]
        found = await asyncio.gather(*(vc.find_vm(n, identity(deployment, n)) for n in nodes))
        reads = vc.statistics()["by_method"]["RetrievePropertiesEx"] - before
        briefs = vc.statistics()["inventory_reads"] - briefs_before
    assert all(found)
    assert reads <= 2
    assert briefs == 0  # kept from the imports (issue #11): the new VMs are read by moref, together


async def test_iops_in_use_counts_other_vms_limits(vcsim: Vcsim, deployment: Deployment) -> None:
    """datastore_iops_in_use sums every other VM's disk limits on the datastore and leaves out the named VM."""
    node = deployment.management
    async with vcenter(deployment) as vc:
        vm = await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
        current = await vc.get_reservation(vm)
        mine = dataclasses.replace(current, disks=tuple(dataclasses.replace(d, iops_limit=700) for d in current.disks))
        await vc.set_reservation(vm, mine)
        assert await vc.datastore_iops_in_use("LocalDS_0", exclude_vm="DC0_H0_VM0") == 700
        assert await vc.datastore_iops_in_use("LocalDS_0", exclude_vm=vm.name) == 0
        assert await vc.datastore_iops_in_use("LocalDS_0", exclude_vm=vm.moref) == 0
        with pytest.raises(Rejected, match="datastore 'nope' not found"):
            await vc.datastore_iops_in_use("nope", exclude_vm=vm.name)


async def test_from_deployment_needs_the_password(deployment: Deployment) -> None:
    """A vCenter password reference that cannot be read is bad input naming vcenter.password."""
    from config.errors import ConfigError
    from config.secrets import Secret

    broken = dataclasses.replace(
        deployment, vcenter=dataclasses.replace(deployment.vcenter, password=Secret("env:NO_SUCH_VARIABLE_HERE"))
    )
    with pytest.raises(ConfigError) as info:
        VCenter.from_deployment(broken)
    assert info.value.problems[0][0] == "vcenter.password"


async def test_an_import_with_a_pinned_thumbprint(vcsim: Vcsim, deployment: Deployment) -> None:
    """With only a SHA-256 pin (no CA), the SOAP calls and the disk upload both go through, pinned."""
    from orchestrator.lab import thumbprint_of

    pinned = dataclasses.replace(
        deployment,
        vcenter=dataclasses.replace(deployment.vcenter, ca_file=None, thumbprint=thumbprint_of(vcsim.cert_file)),
    )
    node = pinned.management
    async with vcenter(pinned) as vc:
        vm = await vc.import_ova(node, identity(pinned, node), pinned.ova.management)
        assert await vc.find_vm(node, identity(pinned, node)) == vm
    assert "HttpNfcLeaseComplete" in writes(vcsim)
    assert "transferred" in (vcsim.workdir / "vcsim.log").read_text(), "the disk bytes reached the lease URL"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "http://127.0.0.1:1/sdk"}, "vcenter.url"),  # TLS is not optional
        (
            {"thumbprint": "sha1:" + ":".join(["AB"] * 20), "ca_file": None},
            "vcenter.thumbprint",
        ),  # SHA-1 pins are refused
        ({"thumbprint": "sha256:AB:CD", "ca_file": None}, "vcenter.thumbprint"),  # not 32 bytes
        ({"ca_file": "/nonexistent/ca.pem"}, "vcenter.ca_file"),  # an unreadable CA file
    ],
)
def test_bad_vcenter_settings_are_bad_input(
    session_deployment: Deployment, change: dict[str, object], field: str
) -> None:
    """A vCenter section that cannot give a verified TLS connection is refused when the adapter is made."""
    from config.errors import ConfigError

    broken = dataclasses.replace(session_deployment, vcenter=dataclasses.replace(session_deployment.vcenter, **change))
    with pytest.raises(ConfigError) as info:
        VCenter.from_deployment(broken)
    assert info.value.problems[0][0] == field


async def test_a_lease_without_an_upload_url_for_a_file_is_aborted(vcsim: Vcsim, deployment: Deployment) -> None:
    """A file of the import spec the lease gives no URL for is never skipped: the import is aborted, not completed."""
    from adapters.vsphere._ova import read_package

    node = deployment.management
    package = read_package(deployment.ova.management, "ova.management")

    def start(content: object) -> tuple[object, object]:
        find = content.searchIndex.FindByInventoryPath  # type: ignore[attr-defined]
        pool, folder, store = find("DC0/host/DC0_H0/Resources"), find("DC0/vm/pexip"), find("DC0/datastore/LocalDS_0")
        result = content.ovfManager.CreateImportSpec(  # type: ignore[attr-defined]
            ovfDescriptor=package.descriptor,
            resourcePool=pool,
            datastore=store,
            cisp=vim.OvfManager.CreateImportSpecParams(entityName=node.name),
        )
        return result, pool.ImportVApp(spec=result.importSpec, folder=folder)

    async with vcenter(deployment) as vc:
        # A lease belongs to the session that made it: the adapter's own starts the import.
        result, lease = await vc._session.call("start an import", start)
        items = list(result.fileItem)  # type: ignore[attr-defined]
        items[0].deviceId = "/someone-else/VirtualLsiLogicController0:0"  # what a lease for another VM would list
        before = len(vcsim.requests())
        with pytest.raises(Rejected, match="gives no upload URL"):
            await vc._uploads.run(lease, package, items, node.name)
    calls = [r["method"] for r in vcsim.requests()[before:]]
    assert "HttpNfcLeaseAbort" in calls and "HttpNfcLeaseComplete" not in calls


async def test_an_import_costs_its_four_calls(vcsim: Vcsim, deployment: Deployment, tmp_path: Path) -> None:
    """Once the identity attribute is defined, an import is: the import, the lease, its completion, the tag (the
    briefs are kept from the first import: no read of every VM; the import spec of the first serves the second)."""
    first, second = (dataclasses.replace(deployment.management, name=f"pexip-calls-{i}") for i in range(2))
    ova = str(make_test_ova(tmp_path / "calls.ova"))
    async with vcenter(deployment) as vc:
        await vc.import_ova(first, identity(deployment, first), ova)
        before = len(vcsim.requests())
        await vc.import_ova(second, identity(deployment, second), ova)
        calls = [r["method"] for r in vcsim.requests()[before:]]
    assert calls == [
        "ImportVApp",
        "RetrievePropertiesEx",
        "HttpNfcLeaseComplete",
        "SetField",
    ]


async def test_a_reservation_seen_with_its_task_is_not_read_again(vcsim: Vcsim, deployment: Deployment) -> None:
    """The read that finds the reconfiguration done shows the new reservation: observing it right after reads nothing
    more."""
    node = deployment.management
    async with vcenter(deployment) as vc:
        vm = await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
        current = await vc.get_reservation(vm)
        wanted = dataclasses.replace(
            current,
            cpu_reservation_mhz=2294,
            cpu_limit_mhz=2294,
            memory_reservation_mb=1024,
            memory_limit_mb=1024,
            memory_locked=True,
            disks=tuple(dataclasses.replace(d, iops_limit=500) for d in current.disks),
        )
        before = len(vcsim.requests())
        await vc.set_reservation(vm, wanted)
        after = await vc.get_reservation(vm)
        calls = [r["method"] for r in vcsim.requests()[before:]]
    assert calls[calls.index("ReconfigVM_Task") :] == [
        "ReconfigVM_Task",
        "RetrievePropertiesEx",
    ]  # the task's read, no other
    assert after == wanted


@pytest.mark.parametrize(
    ("shown", "reads_after"),
    [
        (True, 0),  # the record read with the task shows the change: it is the observation after it
        (False, 1),  # it does not (read before the change took effect): the next observation reads anew
    ],
)
async def test_a_record_read_with_its_task_serves_only_if_it_shows_the_change(
    vcsim: Vcsim, deployment: Deployment, shown: bool, reads_after: int
) -> None:
    """A record read in the call that saw the task succeed is used later only when it shows the change."""
    node = deployment.management
    async with vcenter(deployment) as vc:
        vm = await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
        rec = await vc._resolve(vm)
        await vc._reconfigure(rec, vim.vm.ConfigSpec(annotation="seen"), "annotate", shows=lambda r: shown)
        before = len(vcsim.requests())
        await vc.get_bios(vm)
        calls = [r["method"] for r in vcsim.requests()[before:]]
    assert calls.count("RetrievePropertiesEx") == reads_after
