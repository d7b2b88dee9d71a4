"""One import spec per OVA and placement, renamed per node; finding a new VM reads its brief only (#11 target 5).

vCenter writes the entity name into the import spec it makes (the VM's name, its disks' paths, the
files' device ids): asked once under a template name and renamed per node, 100 imports of one OVA
cost one ``CreateImportSpec`` instead of 100, and the VMs are the same as if each had asked.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from _vcsim import identity, vcenter
from pyVmomi import vim

from adapters.vsphere._import import TEMPLATE_NAME, renamed
from adapters.vsphere._inventory import VmBrief
from config.model import Deployment
from orchestrator.lab import Vcsim, make_test_ova


def _template() -> Any:
    disk = vim.vm.device.VirtualDisk(
        key=2000,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName=f"[ds] {TEMPLATE_NAME}/disk-0.vmdk"),
    )
    config = vim.vm.ConfigSpec(
        name=TEMPLATE_NAME,
        numCPUs=4,
        deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="add", device=disk)],
        extraConfig=[],
    )
    pool = vim.ResourcePool("resgroup-22")
    return vim.OvfManager.CreateImportSpecResult(
        importSpec=vim.VirtualMachineImportSpec(configSpec=config, resPoolEntity=pool),
        fileItem=[vim.OvfManager.FileItem(deviceId=f"/{TEMPLATE_NAME}/disk:0", path="d.vmdk", size=1, create=False)],
    )


def test_a_renamed_spec_carries_the_name_everywhere_and_leaves_the_template_as_it_was() -> None:
    """Every string naming the template names the node in the copy; references are shared, and a change made to
    the copy (the identity added to extraConfig) never reaches the template."""
    template = _template()
    copy = renamed(template, TEMPLATE_NAME, "pexip-conf-7")
    config = copy.importSpec.configSpec
    assert config.name == "pexip-conf-7" and config.numCPUs == 4
    assert config.deviceChange[0].device.backing.fileName == "[ds] pexip-conf-7/disk-0.vmdk"
    assert copy.fileItem[0].deviceId == "/pexip-conf-7/disk:0"
    assert copy.importSpec.resPoolEntity is template.importSpec.resPoolEntity
    assert type(copy.fileItem) is type(template.fileItem)
    config.extraConfig = [*config.extraConfig, vim.option.OptionValue(key="k", value="v")]
    config.deviceChange[0].device.key = 2001
    spec = template.importSpec.configSpec
    assert spec.name == TEMPLATE_NAME and spec.extraConfig == [] and spec.deviceChange[0].device.key == 2000
    assert template.fileItem[0].deviceId == f"/{TEMPLATE_NAME}/disk:0"


@pytest.mark.vcsim
async def test_imports_at_once_share_one_spec_and_each_vm_has_its_own_name_and_disks(
    vcsim: Vcsim, deployment: Deployment, tmp_path: Path
) -> None:
    """Three imports of one OVA at once ask for one import spec; each VM has its own name and its disks in its own
    folder; a name vCenter might escape (a dot here) asks for its own spec."""
    ova = str(make_test_ova(tmp_path / "shared.ova"))
    nodes = [dataclasses.replace(deployment.management, name=f"pexip-shared-{i}") for i in range(3)]
    dotted = dataclasses.replace(deployment.management, name="pexip.dotted")
    async with vcenter(deployment) as vc:
        before = len(vcsim.requests())
        vms = await asyncio.gather(*(vc.import_ova(n, identity(deployment, n), ova) for n in nodes))
        methods = [r["method"] for r in vcsim.requests()[before:]]
        assert methods.count("CreateImportSpec") == 1 and methods.count("ImportVApp") == 3
        before = len(vcsim.requests())
        vms.append(await vc.import_ova(dotted, identity(deployment, dotted), ova))
        assert [r["method"] for r in vcsim.requests()[before:]].count("CreateImportSpec") == 1
        records = await vc._reads.records([vm.moref for vm in vms])
        for node, vm in zip([*nodes, dotted], vms, strict=True):
            assert records[vm.moref].name == node.name
            assert await vc.find_vm(node, identity(deployment, node)) == vm
            paths = {d.device.backing.fileName for d in records[vm.moref].disks}
            assert paths and all(f"] {node.name}/" in p for p in paths), paths


@pytest.mark.vcsim
async def test_finding_a_vm_imported_here_reads_its_brief_not_its_devices(
    vcsim: Vcsim, deployment: Deployment, tmp_path: Path
) -> None:
    """The verification of an import finds the new VM by a read of its brief alone, which is kept: the next
    lookup reads nothing."""
    node = dataclasses.replace(deployment.management, name="pexip-brief-1")
    async with vcenter(deployment) as vc:
        vm = await vc.import_ova(node, identity(deployment, node), str(make_test_ova(tmp_path / "brief.ova")))
        found = await vc._reads.named(identity=identity(deployment, node))
        assert [type(b) for b in found] == [VmBrief] and found[0].moref == vm.moref
        assert found[0].power_state == "poweredOff" and found[0].num_cpus == vm.num_cpus
        before = len(vcsim.requests())
        assert await vc.find_vm(node, identity(deployment, node)) == vm
        assert vcsim.requests()[before:] == []
