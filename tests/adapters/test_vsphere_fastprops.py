"""Property reads parsed with ElementTree (#11 item 5) give exactly what pyVmomi's deserialiser gives.

Against vcsim: the same VMs, briefs, inventory, tasks and missing objects read both ways compare
equal, down to the pyVmomi objects a reconfiguration sends back. Without vcsim: an answer written
here, with other namespace prefixes and a continuation token, is read as pyVmomi would read it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest
from _vcsim import identity, vcenter
from pyVmomi import SoapAdapter, vim, vmodl

from adapters.vsphere import VCenter
from adapters.vsphere._bios import bios_state
from adapters.vsphere._fastprops import Devices, _parse
from adapters.vsphere._reserve import reservation
from config.model import Deployment
from orchestrator.lab import Vcsim, make_test_ova

PC = vmodl.query.PropertyCollector


def _xml(obj: Any) -> str:
    return str(SoapAdapter.Serialize(obj))


async def _both(vc: VCenter, read: Any) -> tuple[Any, Any]:
    """``read()`` parsed here, then by pyVmomi (the same session, nothing changed in between)."""
    fast = await read()
    stub = vc._session._stub
    assert stub is not None and stub.fast_reads
    stub.fast_reads = False
    try:
        slow = await read()
    finally:
        stub.fast_reads = True
    return fast, slow


@pytest.mark.vcsim
async def test_vm_records_briefs_and_inventory_read_here_equal_pyvmomis(
    vcsim: Vcsim, deployment: Deployment, tmp_path: Path
) -> None:
    """Records (disks, allocations, boot options, extraConfig), briefs and the inventory are the same both ways."""
    async with vcenter(deployment) as vc:
        ova = str(make_test_ova(tmp_path / "fast.ova"))
        nodes = [dataclasses.replace(deployment.management, name=f"pexip-fast-{i}") for i in range(2)]
        vms = list(await asyncio.gather(*(vc.import_ova(n, identity(deployment, n), ova) for n in nodes)))
        current = await vc.get_reservation(vms[0])
        disks = tuple(dataclasses.replace(d, iops_limit=321, shares="high") for d in current.disks)
        await vc.set_reservation(vms[0], dataclasses.replace(current, memory_locked=True, disks=disks))
        morefs = [vm.moref for vm in vms]

        fast, slow = await _both(vc, lambda: vc._reads.records(morefs))
        inv, _ = await vc._inventory()
        assert set(fast) == set(slow) == set(morefs)
        for moref in morefs:
            f, s = fast[moref], slow[moref]
            plain = {"fetched_at": 0, "ref": None, "cpu_allocation": None, "memory_allocation": None}
            assert dataclasses.replace(f, boot_options=None, **plain) == dataclasses.replace(
                s, boot_options=None, **plain
            )
            assert f.ref == s.ref and f.disks == s.disks and f.disks
            assert reservation(f, inv) == reservation(s, inv)
            assert bios_state(f) == bios_state(s)
            assert [_xml(d.device) for d in f.disks] == [_xml(d.device) for d in s.disks]
            assert _xml(f.boot_options) == _xml(s.boot_options)
            assert _xml(f.cpu_allocation) == _xml(s.cpu_allocation)
            assert _xml(f.memory_allocation) == _xml(s.memory_allocation)
        assert [d.iops_limit for d in fast[morefs[0]].disks] == [321] * len(disks)

        fast_briefs, slow_briefs = await _both(vc, vc._reads.briefs)
        assert {m: dataclasses.replace(b, fetched_at=0) for m, b in fast_briefs.vms.items()} == {
            m: dataclasses.replace(b, fetched_at=0) for m, b in slow_briefs.vms.items()
        }
        assert fast_briefs.fields == slow_briefs.fields

        def read_inventory() -> Any:
            vc._session.forget("inventory")
            return vc._inventory()

        (fast_inv, fast_folder), (slow_inv, slow_folder) = await _both(vc, read_inventory)
        assert fast_inv.hosts == slow_inv.hosts and fast_inv.datastores == slow_inv.datastores
        assert fast_inv.networks == slow_inv.networks and fast_folder == slow_folder
        assert set(fast_inv.resource_pools) == set(slow_inv.resource_pools)


@pytest.mark.vcsim
async def test_a_vm_gone_and_a_finished_task_read_here_equal_pyvmomis(
    vcsim: Vcsim, deployment: Deployment, tmp_path: Path
) -> None:
    """A removed VM is absent both ways; a task's state and result (a moref) are the same objects."""
    async with vcenter(deployment) as vc:
        ova = str(make_test_ova(tmp_path / "gone.ova"))
        node = dataclasses.replace(deployment.management, name="pexip-fast-gone")
        vm = await vc.import_ova(node, identity(deployment, node), ova)
        rec = (await vc._reads.records([vm.moref]))[vm.moref]
        task = await asyncio.to_thread(rec.ref.PowerOnVM_Task)
        await vc._tasks.wait(task, "power on")
        key = ("task", task._moId, vc._session.generation)
        fast, slow = await _both(vc, lambda: vc._reads.objects({key}))
        assert fast[key]["info.state"] == slow[key]["info.state"] == "success"
        assert fast[key].get("info.result") == slow[key].get("info.result")
        # Each task waited for, not slept for (0.2 s each, which a loaded vcsim can outlast).
        await vc._tasks.wait(await asyncio.to_thread(rec.ref.PowerOffVM_Task), "power off")
        await vc._tasks.wait(await asyncio.to_thread(rec.ref.Destroy_Task), "destroy")
        fast, slow = await _both(vc, lambda: vc._reads.records([vm.moref]))
        assert fast == slow == {}


ANSWER = b"""<?xml version="1.0" encoding="UTF-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><s:Body>
<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><token>page-2</token>
<objects><obj type="VirtualMachine">vm-7</obj>
<propSet><name>name</name><val i:type="xs:string">a &amp; b</val></propSet>
<propSet><name>config.hardware.numCPU</name><val i:type="xs:int">4</val></propSet>
<propSet><name>config.memoryReservationLockedToMax</name><val i:type="xs:boolean">true</val></propSet>
<propSet><name>runtime.host</name>
<val i:type="ManagedObjectReference" type="HostSystem" serverGuid="g-1">host-1</val></propSet>
<propSet><name>runtime.powerState</name><val i:type="VirtualMachinePowerState">poweredOn</val></propSet>
<propSet><name>runtime.bootTime</name><val i:type="xs:dateTime">2026-12-03T12:00:00Z</val></propSet>
<propSet><name>customValue</name><val i:type="ArrayOfCustomFieldValue">
<CustomFieldValue i:type="CustomFieldStringValue">
<key>101</key><value>lab/pexip-mgmt</value></CustomFieldValue></val></propSet>
<propSet><name>config.extraConfig</name><val i:type="ArrayOfOptionValue">
<OptionValue><key>a</key><value i:type="xs:string">x</value></OptionValue>
<OptionValue><key>b</key><value i:type="xs:int">7</value></OptionValue></val></propSet>
<propSet><name>config.cpuAllocation</name><val i:type="ResourceAllocationInfo"><reservation>2400</reservation>
<expandableReservation>false</expandableReservation><limit>-1</limit><shares><shares>4000</shares><level>normal</level>
</shares></val></propSet>
<propSet><name>datastore</name><val i:type="ArrayOfManagedObjectReference">
<ManagedObjectReference type="Datastore" i:type="ManagedObjectReference">datastore-9</ManagedObjectReference>
</val></propSet>
<propSet><name>config.hardware.device</name><val i:type="ArrayOfVirtualDevice">
<VirtualDevice i:type="VirtualLsiLogicController"><key>1000</key><busNumber>0</busNumber></VirtualDevice>
<VirtualDevice i:type="VirtualDisk"><key>2000</key>
<deviceInfo><label>Hard disk 1</label><summary>s</summary></deviceInfo>
<backing i:type="VirtualDiskFlatVer2BackingInfo"><fileName>[ds] a.vmdk</fileName>
<datastore type="Datastore">datastore-9</datastore><diskMode>persistent</diskMode></backing>
<controllerKey>1000</controllerKey><unitNumber>0</unitNumber><capacityInKB>1024</capacityInKB>
<storageIOAllocation><limit>250</limit><shares><shares>2000</shares><level>high</level></shares></storageIOAllocation>
</VirtualDevice></val></propSet>
<missingSet><path>config.extraConfig</path><fault><fault i:type="NoPermission"><privilegeId>System.Read</privilegeId>
</fault><localizedMessage>no</localizedMessage></fault></missingSet>
</objects></returnval></RetrievePropertiesExResponse></s:Body></s:Envelope>"""


def test_an_answer_with_other_prefixes_is_read_as_pyvmomi_reads_it() -> None:
    """Scalars, a moref, an enum, the devices (a disk's pyVmomi object), a missing property and the token."""
    objects, token = _parse(ANSWER, None)
    result = SoapAdapter.SoapResponseDeserializer(None).Deserialize(io.BytesIO(ANSWER), PC.RetrieveResult)
    (theirs,) = result.objects
    assert result.token == token
    ours = {x.name: x.val for x in objects[0].propSet}
    assert set(ours) == {x.name for x in theirs.propSet}
    for prop in theirs.propSet:
        mine = ours[prop.name]
        if isinstance(mine, Devices):
            assert [(type(d.vim), d.key) for d in mine] == [(type(d), d.key) for d in prop.val]
            assert _xml(mine[1].vim) == _xml(prop.val[1])  # the disk: what a reconfiguration sends back
            continue
        assert type(mine) is type(prop.val), prop.name
        assert _xml(mine) == _xml(prop.val), prop.name
    assert token == "page-2"
    (o,) = objects
    assert isinstance(o.obj, vim.VirtualMachine) and o.obj._moId == "vm-7"
    p = {x.name: x.val for x in o.propSet}
    assert p["name"] == "a & b" and p["config.hardware.numCPU"] == 4
    assert p["config.memoryReservationLockedToMax"] is True
    assert isinstance(p["runtime.host"], vim.HostSystem) and p["runtime.host"]._moId == "host-1"
    assert p["runtime.host"]._serverGuid == "g-1"
    assert p["runtime.powerState"] == vim.VirtualMachine.PowerState.poweredOn
    assert [(o.key, o.value) for o in p["config.extraConfig"]] == [("a", "x"), ("b", 7)]
    assert p["config.cpuAllocation"].reservation == 2400 and p["config.cpuAllocation"].shares.level == "normal"
    devices = p["config.hardware.device"]
    assert isinstance(devices, Devices) and [d.key for d in devices] == [1000, 2000]
    disk = devices[1].vim
    assert isinstance(disk, vim.vm.device.VirtualDisk) and disk.backing.datastore._moId == "datastore-9"
    assert disk.storageIOAllocation.limit == 250 and disk.deviceInfo.label == "Hard disk 1"
    (missing,) = o.missingSet
    assert missing.path == "config.extraConfig" and isinstance(missing.fault, vim.fault.NoPermission)


def test_an_iops_table_keeps_its_total_as_entries_change() -> None:
    """Replacing a VM's limits moves the total; leaving a VM out works by moref and by name."""
    from adapters.vsphere._reserve import _Table

    table = _Table({"vm-1": ("a", 100), "vm-2": ("b", 200)})
    table.set("vm-1", "a", 150)
    table.set("vm-3", "c", 50)
    assert table.total == 400 and table.of("vm-1") == 150 and table.of("vm-9") == 0
    assert table.without("vm-2") == 200 and table.without("b") == 200 and table.without("nobody") == 400
