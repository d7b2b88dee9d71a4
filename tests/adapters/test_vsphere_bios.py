"""The real vSphere adapter's BIOS lock against vcsim: the keys typed, the password kept secret, one power-on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from _vcsim import admin, identity, vcenter, writes
from pyVmomi import vim

from config.errors import Rejected
from config.model import Deployment
from orchestrator.lab import Vcsim, make_test_ova

pytestmark = pytest.mark.vcsim


def _expected_keys(password: str) -> list[tuple[int, bool]]:
    """The keystroke script written out by hand from the guide (HID usage IDs, shift)."""
    right, enter = (0x4F, False), (0x28, False)
    table = {
        "P": (0x13, True),
        "x": (0x1B, False),
        "-": (0x2D, False),
        "9": (0x26, False),
        "!": (0x1E, True),
        "b": (0x05, False),
    }
    typed = [table[c] for c in password]
    return [right, right, enter, *typed, enter, *typed, enter, enter] + [right, right, enter, enter]


@pytest.mark.parametrize(
    "password",
    [
        "Px-9!b",  # upper case and '!' need shift; '-' and digits do not
        "xxxxxxxx",  # eight of one key: every press is sent, none merged
    ],
)
async def test_bios_password_is_typed_as_the_expected_hid_codes(
    vcsim: Vcsim, deployment: Deployment, password: str
) -> None:
    """The keys vcsim recorded are exactly the keystroke script for the Security and Exit pages."""
    node = deployment.management
    async with vcenter(deployment) as vc:
        vm = await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
        await vc.lock_bios(vm, password)
    recorded = vcsim.keys()
    assert {k["vm"] for k in recorded} == {vm.moref}
    assert [(k["usbHidCode"] & 0xFFFF) for k in recorded] == [7] * len(recorded)
    got = [(k["hid"], bool((k["modifiers"] or {}).get("leftShift"))) for k in recorded]
    assert got == _expected_keys(password)


async def test_the_password_reaches_no_log_or_message(
    vcsim: Vcsim, deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    """Locking the BIOS logs nothing that holds the password, and the vcsim log does not hold it either."""
    password = "Px-9!b" * 2
    node = deployment.management
    caplog.set_level("DEBUG")
    async with vcenter(deployment) as vc:
        vm = await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
        await vc.lock_bios(vm, password)
        stats = repr(vc.statistics())
    assert password not in caplog.text and password not in stats
    assert password not in (vcsim.workdir / "vcsim.log").read_text()


def _mark_bios(vc: Vcsim, vm_name: str, value: str, *, power_on: bool) -> None:
    """What a run killed while typing the password leaves: the "typing" marker, maybe a running VM."""
    with admin(vc) as content:
        vm = content.searchIndex.FindByInventoryPath(f"DC0/vm/pexip/{vm_name}")
        vm.ReconfigVM_Task(
            spec=vim.vm.ConfigSpec(
                extraConfig=[vim.option.OptionValue(key="pexip-orchestrator.bios_lock", value=value)]
            )
        )
        if power_on:
            vm.PowerOnVM_Task()


@pytest.mark.parametrize(
    ("power_on", "outcome"),
    [
        (True, "refused"),  # the VM runs: keys may have reached the BIOS, only its console can tell
        (False, "locked"),  # the VM is off: no key can have been typed, the lock starts over
    ],
)
async def test_a_bios_lock_interrupted_while_typing(
    vcsim: Vcsim, deployment: Deployment, power_on: bool, outcome: str
) -> None:
    """An interrupted lock is never typed into an unknown screen: a running VM needs the operator."""
    node = deployment.management
    async with vcenter(deployment) as vc:
        vm = await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
        _mark_bios(vcsim, node.name, "typing", power_on=power_on)
        before = len(vcsim.requests())
        if outcome == "refused":
            with pytest.raises(Rejected, match="interrupted while its password was being typed; open its console"):
                await vc.lock_bios(vm, "Px-9!b")
            assert writes(vcsim, before) == []
        else:
            await vc.lock_bios(vm, "Px-9!b")
            assert (await vc.get_bios(vm)).locked_marker
            assert writes(vcsim, before).count("PutUsbScanCodes") == 2


async def test_bios_locks_at_once_share_one_power_on(vcsim: Vcsim, deployment: Deployment, tmp_path: Path) -> None:
    """Four VMs locked at once are powered on by one PowerOnMultiVM_Task, and each is typed into and verified."""
    import asyncio

    nodes = [dataclasses.replace(deployment.management, name=f"pexip-lock-{i}") for i in range(4)]
    ova = str(make_test_ova(tmp_path / "lock.ova"))
    async with vcenter(
        deployment, read_batch_wait_s=5.0
    ) as vc:  # batches wait for every VM, however loaded the machine
        vms = await asyncio.gather(*(vc.import_ova(n, identity(deployment, n), ova) for n in nodes))
        before = len(vcsim.requests())
        await asyncio.gather(*(vc.lock_bios(vm, "Px-9!b") for vm in vms))
        states = [await vc.get_bios(vm) for vm in vms]
    calls = [r["method"] for r in vcsim.requests()[before:]]
    assert calls.count("PowerOnMultiVM_Task") == 1 and "PowerOnVM_Task" not in calls
    assert all(
        s.power_state == "poweredOn" and s.locked_marker and s.boot_disk_first and not s.enter_bios_setup
        for s in states
    )
    recorded = vcsim.keys()
    typed = {vm.moref: len([k for k in recorded if k["vm"] == vm.moref]) for vm in vms}
    assert typed == {vm.moref: len(_expected_keys("Px-9!b")) for vm in vms}


async def test_without_vcenter_each_vm_is_powered_on_by_itself(
    vcsim: Vcsim, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the server is ESXi alone (no PowerOnMultiVM_Task), the lock powers the VM on with PowerOnVM_Task."""
    node = deployment.management
    async with vcenter(deployment) as vc:
        vm = await vc.import_ova(node, identity(deployment, node), deployment.ova.management)

        async def esxi() -> bool:
            return False

        # vcsim is built as a vCenter only; this stands for the answer an ESXi host gives.
        monkeypatch.setattr(vc._power, "supported", esxi)
        before = len(vcsim.requests())
        await vc.lock_bios(vm, "Px-9!b")
        assert (await vc.get_bios(vm)).power_state == "poweredOn"
    calls = [r["method"] for r in vcsim.requests()[before:]]
    assert calls.count("PowerOnVM_Task") == 1 and "PowerOnMultiVM_Task" not in calls
