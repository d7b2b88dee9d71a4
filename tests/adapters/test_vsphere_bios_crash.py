"""A crash during ``lock_bios`` needs the operator only once a key may have been typed (#7 finding 13).

The "typing" marker is written right before the first keystroke: a crash before it (while the VM
powers on and boots into setup) leaves no marker and the retry completes by itself; a crash after
the first key leaves the marker on a running VM, and the retry asks for the operator. Both the real
adapter (against vcsim) and its twin (over the simulated world) behave so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _sim_factory import identity as sim_identity
from _sim_factory import make_deployment
from _vcsim import identity, vcenter

from adapters.sim import SimVSphere, SimWorld
from adapters.sim.world import VM
from adapters.vsphere import VCenter
from config.errors import Rejected
from config.model import Deployment
from orchestrator.lab import Vcsim

PASSWORD = "Px-9!b"
OPERATOR = "interrupted while its password was being typed; open its console"


class Crash(BaseException):
    """The process dying at this point (nothing after it runs, no cleanup of ours)."""


def _marker(vcsim: Vcsim, moref: str) -> str | None:
    from _vcsim import admin

    with admin(vcsim) as content:
        view = content.viewManager.CreateContainerView(content.rootFolder, [], True)
        vm = next(o for o in view.view if getattr(o, "_moId", None) == moref)
        values = [o.value for o in vm.config.extraConfig if o.key == "pexip-orchestrator.bios_lock"]
        return values[-1] if values else None  # the last one counts, as for the adapter (vcsim appends)


@pytest.mark.vcsim
async def test_vcsim_a_crash_before_the_first_key_is_retried_without_an_operator(
    vcsim: Vcsim, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the power-on, before any key: no marker is left and the retry locks the BIOS by itself."""
    node = deployment.management
    async with vcenter(deployment) as vc:
        vm = await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
        real_power_on = VCenter._power_on

        async def power_on_then_die(self: VCenter, rec: Any, *, reset: bool) -> None:
            await real_power_on(self, rec, reset=reset)
            raise Crash  # the VM runs, boots into setup; no key has been sent

        monkeypatch.setattr(VCenter, "_power_on", power_on_then_die)
        with pytest.raises(Crash):
            await vc.lock_bios(vm, PASSWORD)
    monkeypatch.undo()
    assert vcsim.keys() == []
    assert _marker(vcsim, vm.moref) is None
    async with vcenter(deployment) as vc:  # the retry, by a new process
        assert (await vc.get_bios(vm)).power_state == "poweredOn"
        await vc.lock_bios(vm, PASSWORD)
        state = await vc.get_bios(vm)
    assert state.locked_marker and state.boot_disk_first and not state.enter_bios_setup
    assert _marker(vcsim, vm.moref) == "done"
    assert len(vcsim.keys()) == 2 * len(PASSWORD) + 10  # the whole script (test_vsphere_bios._expected_keys) once


@pytest.mark.vcsim
async def test_vcsim_a_crash_after_the_first_key_asks_for_the_operator(
    vcsim: Vcsim, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the first keys reached the console: the retry refuses and names the console."""
    node = deployment.management
    async with vcenter(deployment) as vc:
        vm = await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
        real_type = VCenter._type

        async def type_then_die(self: VCenter, rec: Any, keys: list[Any]) -> None:
            await real_type(self, rec, keys)
            raise Crash

        monkeypatch.setattr(VCenter, "_type", type_then_die)
        with pytest.raises(Crash):
            await vc.lock_bios(vm, PASSWORD)
    monkeypatch.undo()
    assert vcsim.keys() != []
    assert _marker(vcsim, vm.moref) == "typing"
    async with vcenter(deployment) as vc:
        with pytest.raises(Rejected, match=OPERATOR):
            await vc.lock_bios(vm, PASSWORD)


# --- the twin ---------------------------------------------------------------------------------


@pytest.fixture
def sim_deployment(tmp_path: Path) -> Deployment:
    return make_deployment(1, tmp_path)


async def _twin_killed_in(
    method: str, world: SimWorld, sim_deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> tuple[SimVSphere, Any]:
    """The twin's Management Node VM imported, then its ``lock_bios`` killed where ``method`` runs."""
    node = sim_deployment.management
    vsphere = SimVSphere(world, sim_deployment)
    vm = await vsphere.import_ova(node, sim_identity(sim_deployment, node), sim_deployment.ova.management)

    async def die(*args: Any, **kwargs: Any) -> None:
        raise Crash

    monkeypatch.setattr(SimVSphere, method, die)
    with pytest.raises(Crash):
        await vsphere.lock_bios(vm, PASSWORD)
    monkeypatch.undo()
    return vsphere, vm


async def test_twin_a_crash_before_the_first_key_is_retried_without_an_operator(
    world: SimWorld, sim_deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The twin, killed before the first key, leaves no "typing" marker and its retry completes."""
    node = sim_deployment.management
    vsphere, vm = await _twin_killed_in("_mark_typing", world, sim_deployment, monkeypatch)
    stored = world.get(VM, node.name)
    assert stored["power_state"] == "poweredOn" and stored["bios"].get("lock") is None
    await SimVSphere(world, sim_deployment).lock_bios(vm, PASSWORD)
    bios = await vsphere.get_bios(vm)
    assert bios.locked_marker and bios.boot_disk_first and not bios.enter_bios_setup
    assert world.effects_summary()[node.name] == {"vm_import": 1, "power_on": 1, "bios_lock": 1}


async def test_twin_a_crash_after_the_first_key_asks_for_the_operator(
    world: SimWorld, sim_deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The twin, killed while typing, leaves the marker on a running VM, and its retry is refused."""
    node = sim_deployment.management
    vsphere, vm = await _twin_killed_in("_type_password", world, sim_deployment, monkeypatch)
    assert world.get(VM, node.name)["bios"]["lock"] == "typing"
    with pytest.raises(Rejected, match=OPERATOR):
        await SimVSphere(world, sim_deployment).lock_bios(vm, PASSWORD)
    assert not (await vsphere.get_bios(vm)).locked_marker
