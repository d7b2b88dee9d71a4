"""The preflight against vcsim: every bad input is a clear error naming its field, and nothing is changed."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _vcsim import admin, vcenter, writes
from pyVmomi import vim

from adapters.vsphere._inventory import HostRecord, Inventory, PortgroupRecord
from adapters.vsphere._preflight import check
from config.errors import ConfigError
from config.model import Deployment
from config.secrets import Secret
from orchestrator.lab import Vcsim

pytestmark = pytest.mark.vcsim


def _portgroup(vc: Vcsim, name: str, vlan: int, host: str = "DC0_H0", vswitch: str = "vSwitch1") -> None:
    with admin(vc) as content:
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
        target = next(h for h in view.view if h.name == host)
        target.configManager.networkSystem.AddPortGroup(
            portgrp=vim.host.PortGroup.Specification(
                name=name, vlanId=vlan, vswitchName=vswitch, policy=vim.host.NetworkPolicy()
            )
        )


def _disk_limit(vc: Vcsim, vm_name: str, iops: int) -> None:
    with admin(vc) as content:
        vm = content.searchIndex.FindByInventoryPath(f"DC0/vm/{vm_name}")
        disk = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk))
        disk.storageIOAllocation = vim.StorageResourceManager.IOAllocationInfo(
            limit=iops, shares=vim.SharesInfo(level="normal", shares=1000)
        )
        vm.ReconfigVM_Task(
            spec=vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)])
        )


def _node(d: Deployment, where: str, **changes: Any) -> Deployment:
    if where == "management":
        return dataclasses.replace(d, management=dataclasses.replace(d.management, **changes))
    i = int(where.split("[")[1].rstrip("]"))
    conferencing = list(d.conferencing)
    conferencing[i] = dataclasses.replace(conferencing[i], **changes)
    return dataclasses.replace(d, conferencing=tuple(conferencing))


def _host(d: Deployment, i: int, **changes: Any) -> Deployment:
    hosts = list(d.vcenter.hosts)
    hosts[i] = dataclasses.replace(hosts[i], **changes)
    return dataclasses.replace(d, vcenter=dataclasses.replace(d.vcenter, hosts=tuple(hosts)))


def _vcenter(d: Deployment, **changes: Any) -> Deployment:
    return dataclasses.replace(d, vcenter=dataclasses.replace(d.vcenter, **changes))


def _bios_password(tmp_path: Path, value: str) -> Callable[[Deployment], Deployment]:
    def change(d: Deployment) -> Deployment:
        path = tmp_path / "bios-password"
        path.write_text(value)
        return dataclasses.replace(d, bios=dataclasses.replace(d.bios, password=Secret(f"file:{path}")))

    return change


Case = tuple[Callable[[Vcsim], None] | None, Callable[[Deployment], Deployment], str, str]

CASES: dict[str, Case] = {
    # VLAN 4095 (virtual guest tagging) on the node and its portgroup
    "vlan-4095": (
        lambda vc: _portgroup(vc, "Pexip-VLAN4095", 4095),
        lambda d: _node(d, "management", portgroup="Pexip-VLAN4095", vlan=4095),
        "management.vlan",
        "guest tagging",
    ),
    # a VLAN of vcenter.reserved_vlans
    "vlan-reserved": (
        lambda vc: _portgroup(vc, "Pexip-VLAN1002", 1002),
        lambda d: _node(d, "conferencing[0]", portgroup="Pexip-VLAN1002", vlan=1002),
        "conferencing[0].vlan",
        "reserved_vlans",
    ),
    # the node says VLAN 300, its portgroup carries 100
    "vlan-mismatch": (None, lambda d: _node(d, "management", vlan=300), "management.vlan", "carries VLAN 100, not 300"),
    # the Pexip nodes alone need 3000 IOPS on LocalDS_0
    "iops-ours": (
        None,
        lambda d: _host(_host(d, 0, datastore_iops_capacity=2500), 1, datastore_iops_capacity=2500),
        "vcenter.hosts[0].datastore_iops_capacity",
        r"\(3000\) plus the other VMs' \(0\) come to 3000, above its capacity 2500",
    ),
    # another VM's disk limit on the datastore pushes the sum over
    "iops-others": (
        lambda vc: _disk_limit(vc, "DC0_H0_VM0", 17500),
        lambda d: d,
        "vcenter.hosts[0].datastore_iops_capacity",
        r"plus the other VMs' \(17500\) come to 20500",
    ),
    # a datastore the host does not have
    "missing-datastore": (
        None,
        lambda d: _host(d, 1, datastore="LocalDS_9"),
        "vcenter.hosts[1].datastore",
        "'LocalDS_9' is not mounted",
    ),
    # a VM of the node's name that this deployment did not create
    "foreign-vm": (
        None,
        lambda d: _node(d, "conferencing[0]", name="DC0_H0_VM0"),
        "conferencing[0].name",
        "never adopted",
    ),
    # a host vCenter does not know
    "missing-host": (None, lambda d: _host(d, 1, name="esxi-99"), "vcenter.hosts[1].name", "host 'esxi-99' not found"),
    # a portgroup that does not exist on the node's host
    "missing-portgroup": (
        None,
        lambda d: _node(d, "conferencing[1]", portgroup="Pexip-VLAN999"),
        "conferencing[1].portgroup",
        "does not exist on host",
    ),
    # the VMs' network on vSwitch0, with the management VMkernel network
    "vm-network-with-management": (
        None,
        lambda d: _host(d, 0, vm_network="vSwitch0"),
        "vcenter.hosts[0].vm_network",
        "with the management network",
    ),
    # a node portgroup on the management vSwitch
    "node-on-management-switch": (
        None,
        lambda d: _node(d, "management", portgroup="VM Network", vlan=0),
        "management.portgroup",
        "with the host's management network",
    ),
    # management_network that is not where vmk0 is
    "not-vmk0": (
        lambda vc: _portgroup(vc, "Other Mgmt", 0, vswitch="vSwitch0"),
        lambda d: _host(d, 0, management_network="Other Mgmt"),
        "vcenter.hosts[0].management_network",
        "vmk0 is on portgroup 'Management Network'",
    ),
    # a VM folder that does not exist
    "missing-folder": (None, lambda d: _vcenter(d, folder="nowhere"), "vcenter.folder", "'nowhere' not found"),
    # a datacenter that does not exist
    "missing-datacenter": (None, lambda d: _vcenter(d, datacenter="DC9"), "vcenter.datacenter", "'DC9' not found"),
    # an OVA that is not there
    "missing-ova": (
        None,
        lambda d: dataclasses.replace(d, ova=dataclasses.replace(d.ova, management="/nonexistent.ova")),
        "ova.management",
        "does not exist",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_input_is_refused_before_any_change(vcsim: Vcsim, deployment: Deployment, case: str) -> None:
    """Each bad input gives a ConfigError naming the field and the fix; vcsim receives no write."""
    shape, change, field, message = CASES[case]
    if shape is not None:
        shape(vcsim)
    before = len(vcsim.requests())
    async with vcenter(change(deployment)) as vc:
        with pytest.raises(ConfigError) as info:
            await vc.preflight(change(deployment))
    problems = dict(info.value.problems)
    assert field in problems, info.value.problems
    assert re.search(message, problems[field]), problems[field]
    assert writes(vcsim, before) == []


async def test_an_untypeable_bios_password_is_refused(vcsim: Vcsim, deployment: Deployment, tmp_path: Path) -> None:
    """A BIOS password with a character the console cannot type is named by position, never shown."""
    broken = _bios_password(tmp_path, "pässword")(deployment)
    async with vcenter(broken) as vc:
        with pytest.raises(ConfigError) as info:
            await vc.preflight(broken)
    assert dict(info.value.problems)["bios.password"].startswith("character 2 of the BIOS password")
    assert "ä" not in str(info.value)


async def test_the_lab_deployment_passes_and_only_reads(vcsim: Vcsim, deployment: Deployment) -> None:
    """The lab's deployment file passes the preflight, with a handful of reads and no write."""
    before = len(vcsim.requests())
    async with vcenter(deployment) as vc:
        await vc.preflight(deployment)
        stats = vc.statistics()
    assert writes(vcsim, before) == []
    assert stats["logins"] == 1 and stats["round_trips"] <= 10, stats


def _host_record(pnics: tuple[str, ...]) -> HostRecord:
    return HostRecord(
        moref="host-1",
        name="DC0_H0",
        cpu_mhz=2294,
        compute_resource="cr-1",
        datastores=("ds-1",),
        networks=(),
        network_system="ns-1",
        pnics=pnics,
        vmk_portgroups={"vmk0": "Management Network"},
        vswitch_uplinks={"vSwitch0": ("vmnic0",), "vSwitch1": pnics[1:]},
        portgroups={
            "Management Network": PortgroupRecord("Management Network", 0, "vSwitch0"),
            "Pexip-VLAN100": PortgroupRecord("Pexip-VLAN100", 100, "vSwitch1"),
        },
    )


@pytest.mark.parametrize(
    ("pnics", "problem"),
    [
        (("vmnic0",), "has 1 physical NIC(s) (vmnic0); the guide requires at least 2"),  # one NIC for everything
        (("vmnic0", "vmnic1"), None),  # management on vmnic0, the VMs on vmnic1
    ],
)
def test_the_host_needs_two_physical_nics(
    session_deployment: Deployment, pnics: tuple[str, ...], problem: str | None
) -> None:
    """A host with fewer than two physical NICs is refused (checked on plain records: vcsim always has two)."""
    d = session_deployment
    inv = Inventory(
        datacenter=None,
        vm_folder=None,
        hosts={"host-1": _host_record(pnics)},
        resource_pools={},
        datastores={"ds-1": "LocalDS_0"},
        networks={"net-1": "Pexip-VLAN100"},
    )
    only_h0 = _host(d, 0, vm_network="vSwitch1")
    only_h0 = dataclasses.replace(
        only_h0,
        vcenter=dataclasses.replace(only_h0.vcenter, hosts=only_h0.vcenter.hosts[:1]),
        conferencing=only_h0.conferencing[:1],
    )
    found = [m for f, m in check(only_h0, inv, {}, folder_found=True) if f == "vcenter.hosts[0]"]
    assert found == ([f"host DC0_H0 {problem}, management apart from the VMs' network"] if problem else [])


def test_shared_uplinks_are_refused(session_deployment: Deployment) -> None:
    """The VMs' vSwitch and the management vSwitch may not share a physical NIC."""
    record = dataclasses.replace(
        _host_record(("vmnic0", "vmnic1")), vswitch_uplinks={"vSwitch0": ("vmnic0",), "vSwitch1": ("vmnic0", "vmnic1")}
    )
    inv = Inventory(
        datacenter=None,
        vm_folder=None,
        hosts={"host-1": record},
        resource_pools={},
        datastores={"ds-1": "LocalDS_0"},
        networks={"net-1": "Pexip-VLAN100"},
    )
    d = _host(session_deployment, 0, vm_network="vSwitch1")
    problems = dict(check(d, inv, {}, folder_found=True))
    assert "share physical NIC(s) vmnic0" in problems["vcenter.hosts[0].vm_network"]
