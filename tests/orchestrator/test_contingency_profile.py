"""`[deployment] profile = "contingency"`: the same configuration builds the guide's fallback deployment.

LDAP-and-local authentication with the local admin kept, no client certificate required, no
licensing, and every VM powered off at the end (the twin's vCenter says so); the primary profile
is unchanged. An unknown profile is refused naming the field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.world import VM, SimWorld
from config.errors import ConfigError, Unreachable
from config.load import load_deployment, simulated_deployment
from config.model import Deployment
from journal import Journal, kinds
from orchestrator import api
from orchestrator.wiring import open_systems
from tests.orchestrator.conftest import run_engine


async def _world_after(deployment: Deployment, tmp: Path) -> dict[str, Any]:
    """What the twin shows: each VM's power state, the authentication settings, licences, the effects."""
    world = SimWorld.open(tmp / "world.sqlite")
    try:
        systems = open_systems(deployment, world)
        power = {}
        for node in deployment.nodes:
            vm = await systems.vsphere.find_vm(node, f"{deployment.name}/{node.name}")
            assert vm is not None
            power[node.name] = vm.power_state
        effects = world.effects_summary()
        await systems.aclose()
    finally:
        await world.aclose()
    return {"power": power, "effects": effects}


def _auth_and_licences(world: SimWorld) -> tuple[dict[str, Any], list[str]]:
    """authentication/1/ as the twin holds it, and its licence objects (read from the world: the VMs are off)."""
    ((_, auth),) = list(world.items("pexip:authentication"))
    return auth, [key for key, _ in world.items("pexip:licence")]


def _contingency(tmp: Path, nodes: int = 3) -> Deployment:
    return dataclasses.replace(simulated_deployment(nodes, tmp / "w.d"), profile="contingency")


async def test_a_contingency_run_ends_as_a_powered_off_fallback(tmp_path: Path) -> None:
    """All at ldap_authenticated; LDAP and local, no client certificate; no licence; every VM off, Manager last."""
    deployment = _contingency(tmp_path)
    report = await run_engine(deployment, tmp_path)
    assert report.exit_code == 0, report.outcomes
    seen = await _world_after(deployment, tmp_path)
    assert set(seen["power"].values()) == {"poweredOff"}, seen["power"]
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        auth, licences = _auth_and_licences(world)
    finally:
        await world.aclose()
    assert auth["source"] == "LDAP+LOCAL", "the guide: LDAP database and local database"
    assert auth["client_certificate"] == "NO", "the guide: Require client certificate: Not required"
    assert licences == [], "deployed without licensing"
    assert not any("licen" in kind for per_node in seen["effects"].values() for kind in per_node)
    with Journal.open(tmp_path / "journal.sqlite") as j:
        assert {r.state for r in j.nodes()} == {"ldap_authenticated"}
        offs = [e for e in j.events(kinds=[kinds.STANDBY_POWER_OFF]) if e.payload["phase"] == "done"]
        steps = {e.step for e in j.events(kinds=[kinds.STEP_COMMITTED])}
    assert [e.node for e in offs][-1] == deployment.management.name, "the Management Node is powered off last"
    assert sorted(e.node for e in offs) == sorted(n.name for n in deployment.nodes)
    assert not any("licen" in (s or "") for s in steps), "no licence step"
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        systems = open_systems(deployment, world)
        with pytest.raises(Unreachable, match="powered off"):
            await systems.pexip.list_objects("role")  # a standby Manager answers nothing until powered on
        await systems.aclose()
    finally:
        await world.aclose()
    again = await run_engine(deployment, tmp_path)
    assert again.exit_code == 0
    with Journal.open(tmp_path / "journal.sqlite") as j:
        assert len([e for e in j.events(kinds=[kinds.STANDBY_POWER_OFF])]) == 2 * len(deployment.nodes), "nothing again"


async def test_the_primary_profile_is_unchanged(tmp_path: Path) -> None:
    """The primary: LDAP alone, client certificates required, the VMs left running, no standby event."""
    deployment = simulated_deployment(2, tmp_path / "w.d")
    assert deployment.profile == "primary"
    assert (await run_engine(deployment, tmp_path)).exit_code == 0
    seen = await _world_after(deployment, tmp_path)
    assert set(seen["power"].values()) == {"poweredOn"}
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        auth, _ = _auth_and_licences(world)
    finally:
        await world.aclose()
    assert (auth["source"], auth["client_certificate"]) == ("LDAP", deployment.ldap.client_certificate)
    with Journal.open(tmp_path / "journal.sqlite") as j:
        assert list(j.events(kinds=[kinds.STANDBY_POWER_OFF])) == []


def test_an_unknown_profile_is_refused_naming_the_field(tmp_path: Path) -> None:
    """profile = "fallback" is bad input: a ConfigError naming deployment.profile and the allowed values."""
    source = Path(__file__).resolve().parents[2] / "config" / "example.toml"
    text = source.read_text().replace('name = "secure-lab"', 'name = "secure-lab"\nprofile = "fallback"', 1)
    path = tmp_path / "orchestrator.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_deployment(path)
    assert "deployment.profile" in str(caught.value) and "primary, contingency" in str(caught.value)


async def test_the_dry_run_plans_the_standby_power_off(tmp_path: Path) -> None:
    """run --dry-run of a contingency deployment ends each node's plan with standby_power_off: unknown before
    the VM exists, a change while it runs, ok once it is off; the primary's plan has no such row."""
    deployment = _contingency(tmp_path, nodes=2)

    async def rows() -> dict[str, dict[str, Any]]:
        world = SimWorld.open(tmp_path / "world.sqlite")
        try:
            with api.open_journal(tmp_path / "journal.sqlite") as journal:
                plan = await api.plan_steps(deployment, journal, world=world)
        finally:
            await world.aclose()
        return {node: steps[-1] for node, steps in plan.nodes.items()}

    assert {r["step"]: r["status"] for r in (await rows()).values()} == {"standby_power_off": "unknown"}
    assert (await run_engine(deployment, tmp_path, nodes=["pexip-mgr"], until="bios_locked")).exit_code == 0
    last = await rows()
    assert {(r["step"], r["status"]) for r in last.values()} == {("standby_power_off", "unknown")}, "depends on steps"
    assert (await run_engine(deployment, tmp_path)).exit_code == 0
    assert {(r["step"], r["status"]) for r in (await rows()).values()} == {("standby_power_off", "ok")}
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:  # an operator powers the standby Manager on in vCenter: the plan would power it off again
        vm = world.get(VM, "pexip-mgr")
        await world.apply([(VM, "pexip-mgr", {**vm, "power_state": "poweredOn"})])
    finally:
        await world.aclose()
    change = (await rows())["pexip-mgr"]
    assert change["status"] == "change" and change["changes"][0]["wanted"] == "poweredOff"
    primary = dataclasses.replace(deployment, profile="primary")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        plan = await api.plan_steps(primary, None, world=world)
    finally:
        await world.aclose()
    assert not any(r["step"] == "standby_power_off" for steps in plan.nodes.values() for r in steps)
