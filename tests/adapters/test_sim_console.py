"""The simulated console: the installation and security wizards."""

from __future__ import annotations

from pathlib import Path

import pytest
from _sim_factory import deploy_vm, identity, make_deployment, make_systems, prompts, worker_vm_fields

from adapters import Console, Systems
from adapters.sim import SimConsole, SimWorld
from adapters.sim.world import CONSOLE
from config.errors import Rejected
from config.model import Deployment

PASSWORD = "admin-Passw0rd-x"
ANSWERS = {"enable_incident_reporting": False, "send_deployment_and_usage_statistics": False}


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return make_deployment(2, tmp_path)


@pytest.fixture
async def systems(world: SimWorld, deployment: Deployment) -> Systems:
    """A world where the Management Node's VM runs with its BIOS locked."""
    s = make_systems(world, deployment)
    await deploy_vm(s, deployment, deployment.management)
    return s


def test_conforms_to_the_protocol(world: SimWorld, deployment: Deployment) -> None:
    """SimConsole is a Console."""
    assert isinstance(SimConsole(world, deployment), Console)


async def test_wizards_move_the_state_forward(systems: Systems, world: SimWorld, deployment: Deployment) -> None:
    """unconfigured -> installed -> secured, console login gone, one effect each."""
    console, mgr = systems.console, deployment.management
    assert await console.wizard_state(mgr) == "unconfigured"
    await console.installation_wizard(mgr, PASSWORD, ANSWERS)
    assert await console.wizard_state(mgr) == "installed"
    await console.security_wizard(mgr, PASSWORD, prompts(deployment))
    assert await console.wizard_state(mgr) == "secured"
    record = world.get(CONSOLE, mgr.name)
    assert record["console_login"] is False
    assert PASSWORD not in str(record)
    kinds = world.effects_summary()[mgr.name]
    assert (kinds["installation_wizard"], kinds["security_wizard"]) == (1, 1)
    with pytest.raises(Rejected, match="OS access"):
        await console.security_wizard(mgr, PASSWORD, prompts(deployment))
    with pytest.raises(Rejected, match="already ran"):
        await console.installation_wizard(mgr, PASSWORD, ANSWERS)
    world.close()
    assert PASSWORD.encode() not in world.path.read_bytes()


async def test_installation_needs_a_locked_running_vm(world: SimWorld, deployment: Deployment) -> None:
    """Without a VM powered on with its BIOS locked there is no console to answer."""
    systems = make_systems(world, deployment)
    mgr = deployment.management
    await systems.vsphere.import_ova(mgr, identity(deployment, mgr), "mgr.ova")
    with pytest.raises(Rejected, match="BIOS"):
        await systems.console.installation_wizard(mgr, PASSWORD, ANSWERS)


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({**ANSWERS, "enable_incident_reporting": True}, "enable_incident_reporting must be no"),  # guide: no
        ({**ANSWERS, "send_deployment_and_usage_statistics": True}, "must be no"),  # guide: no
        ({"send_deployment_and_usage_statistics": False}, "incident reporting"),  # not answered
        ({}, "usage statistics"),  # nothing answered
    ],
)
async def test_installation_answers_follow_the_guide(
    systems: Systems, deployment: Deployment, answers: dict, message: str
) -> None:
    """Incident reporting and usage statistics must both be answered no."""
    with pytest.raises(Rejected, match=message):
        await systems.console.installation_wizard(deployment.management, PASSWORD, answers)
    assert await systems.console.wizard_state(deployment.management) == "unconfigured"


async def test_installation_refuses_a_short_password(systems: Systems, deployment: Deployment) -> None:
    """An admin password under 8 characters is refused."""
    with pytest.raises(Rejected, match="at least 8"):
        await systems.console.installation_wizard(deployment.management, "short", ANSWERS)


@pytest.mark.parametrize(
    ("installed", "password", "drop", "message"),
    [
        (False, PASSWORD, None, "installation wizard first"),  # not installed yet
        (True, "wrong-password", None, "wrong admin password"),  # the console login fails
        (True, PASSWORD, "enable_tls_1_0", "no answer to enable_tls_1_0"),  # a prompt left out
    ],
)
async def test_security_wizard_refusals(
    systems: Systems, deployment: Deployment, installed: bool, password: str, drop: str | None, message: str
) -> None:
    """The security wizard needs an installed node, the admin password and every prompt answered."""
    mgr = deployment.management
    if installed:
        await systems.console.installation_wizard(mgr, PASSWORD, ANSWERS)
    answers = {k: v for k, v in prompts(deployment).items() if k != drop}
    with pytest.raises(Rejected, match=message):
        await systems.console.security_wizard(mgr, password, answers)
    assert await systems.console.wizard_state(mgr) == ("installed" if installed else "unconfigured")


async def test_conferencing_nodes_have_no_wizards(systems: Systems, deployment: Deployment) -> None:
    """A Conferencing Node reads installed once its VM runs, and refuses both wizards."""
    conf = deployment.conferencing[0]
    assert await systems.console.wizard_state(conf) == "unconfigured"
    for wizard in (systems.console.installation_wizard, systems.console.security_wizard):
        with pytest.raises(Rejected, match="Conferencing Node"):
            await wizard(conf, PASSWORD, ANSWERS)
    assert deployment.pexip_api.admin_password is not None
    admin_password = deployment.pexip_api.admin_password.reveal()  # the API logs in with it
    await systems.console.installation_wizard(deployment.management, admin_password, ANSWERS)
    location = await systems.pexip.create("system_location", {"name": "l"})
    await systems.pexip.create("worker_vm", worker_vm_fields(conf, location.uri))
    await deploy_vm(systems, deployment, conf)
    assert await systems.console.wizard_state(conf) == "installed"
