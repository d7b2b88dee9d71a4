"""The BIOS lock of one VM: boot options, power-on, the typed supervisor password, the marker;
and its power-off, for a standby (contingency) deployment once built.

The marker is two-phase (extraConfig ``pexip-orchestrator.bios_lock``, :data:`BIOS_KEY`):
"typing" is written right before the first keystroke, "done" once the keys were saved. A VM
found running with "typing" was interrupted while the password was being typed: whether it
is set can only be seen on its console, so that is refused with instructions instead of
typing again into an unknown screen. A crash before the first key (arming the boot options,
the power-on, the boot into setup) leaves no "typing" and is retried by itself: the VM is
reset into setup and typed into anew (#7 finding 13). The one window left that needs the
operator is between the "typing" write and the first key reaching the console, which is one
SOAP round trip long.
"""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING, Any

from pyVmomi import vim

from adapters.base import BiosState, VmState
from adapters.vsphere._inventory import BIOS_KEY, VmRecord, vm_state
from adapters.vsphere._keys import bios_password_script
from adapters.vsphere._session import SYSTEM
from config.errors import Rejected

if TYPE_CHECKING:
    from adapters.vsphere._vcenter import VCenter

__all__ = ["bios_state", "boot_options", "lock_bios", "power_off"]


def _marker(value: str) -> Any:
    return vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=BIOS_KEY, value=value)])


async def lock_bios(vc: VCenter, vm: VmState, password: str, *, boot_wait_s: float, key_pause_s: float) -> None:
    """:meth:`VCenter.lock_bios` (see its docstring and this module's)."""
    script = bios_password_script(password)  # refuses an untypeable password before any change
    rec = await vc._observed(vm)  # what the step observed (and diffed), unless changed since
    boot_disk = next((d for d in rec.disks if d.is_boot_disk), None)
    if boot_disk is None:
        raise Rejected(f"VM {rec.name} has no SCSI (0:0) hard disk to boot from", system=SYSTEM)
    if rec.bios_lock == "typing" and rec.power_state != "poweredOff":
        raise Rejected(
            f"the BIOS lock of VM {rec.name} was interrupted while its password was being typed; open its console: "
            f"if the BIOS asks for a password, the lock is done (set extraConfig {BIOS_KEY} = done), else power the VM "
            "off and run again",
            system=SYSTEM,
        )
    if rec.bios_lock != "done":
        armed = boot_options(rec.boot_options, boot_disk.key, enter_setup=True)
        await vc._reconfigure(rec, vim.vm.ConfigSpec(bootOptions=armed), "force BIOS setup on")
        await vc._power_on(rec, reset=rec.power_state == "poweredOn")
        await asyncio.sleep(boot_wait_s)
        # Right before the first key: from here on only the console can tell what the BIOS holds.
        await vc._reconfigure(rec, _marker("typing"), "mark the BIOS lock under way on")
        for i, phase in enumerate(script):
            if i:
                await asyncio.sleep(key_pause_s)
            await vc._type(rec, phase)
        await asyncio.sleep(key_pause_s)
        # vSphere clears enterBIOSSetup itself when the VM enters setup; vcsim never runs
        # a BIOS, so there it stays set. Sending it cleared (with the complete boot
        # options: vcsim replaces the struct) holds on both, in the marker's call.
        done = _marker("done")
        done.bootOptions = boot_options(armed, boot_disk.key, enter_setup=False)
        await vc._reconfigure(
            rec,
            done,
            "mark the BIOS lock of",
            shows=lambda r: (
                r.bios_lock == "done" and bios_state(r).boot_disk_first and not bios_state(r).enter_bios_setup
            ),
        )
    else:
        state = bios_state(rec)
        if not state.boot_disk_first or state.enter_bios_setup:
            await vc._reconfigure(
                rec,
                vim.vm.ConfigSpec(bootOptions=boot_options(rec.boot_options, boot_disk.key, enter_setup=False)),
                "set the boot order of",
            )
        if rec.power_state != "poweredOn":
            await vc._power_on(rec, reset=False)
    state = await vc.get_bios(vm)
    if (
        state.enter_bios_setup
        or not state.boot_disk_first
        or state.power_state != "poweredOn"
        or not state.locked_marker
    ):
        raise Rejected(f"the BIOS lock of VM {rec.name} did not verify: {state}", system=SYSTEM)


def bios_state(rec: VmRecord) -> BiosState:
    options = rec.boot_options
    boot_disk = next((d for d in rec.disks if d.is_boot_disk), None)
    order = list(getattr(options, "bootOrder", None) or ())
    first = order[0] if order else None
    return BiosState(
        enter_bios_setup=bool(getattr(options, "enterBIOSSetup", False)),
        boot_disk_first=(
            boot_disk is not None
            and isinstance(first, vim.vm.BootOptions.BootableDiskDevice)
            and first.deviceKey == boot_disk.key
        ),
        power_state=rec.power_state,
        locked_marker=rec.bios_lock == "done",
    )


def boot_options(current: Any, disk_key: int, *, enter_setup: bool) -> Any:
    """Complete boot options (vcsim replaces the struct) with the disk first."""
    options = copy.deepcopy(current) if current is not None else vim.vm.BootOptions()
    rest = [
        d
        for d in (options.bootOrder or ())
        if not (isinstance(d, vim.vm.BootOptions.BootableDiskDevice) and d.deviceKey == disk_key)
    ]
    options.bootOrder = [vim.vm.BootOptions.BootableDiskDevice(deviceKey=disk_key), *rest]
    options.enterBIOSSetup = enter_setup
    return options


async def power_off(vc: VCenter, vm: VmState) -> VmState:
    """PowerOffVM_Task unless the VM is off (a standby contingency deployment), then observed again.

    Raises:
        Rejected: the VM does not show poweredOff afterwards.
    """
    rec = await vc._resolve(vm)
    if rec.power_state != "poweredOff":
        await vc._write(f"power off VM {rec.name}", lambda c: rec.ref.PowerOffVM_Task(), vm=rec.moref, task=True)
        rec = await vc._resolve(vm)
    if rec.power_state != "poweredOff":
        raise Rejected(f"VM {rec.name} is {rec.power_state} after its power-off; check it in vCenter", system=SYSTEM)
    return vm_state(rec, (await vc._inventory())[0])
