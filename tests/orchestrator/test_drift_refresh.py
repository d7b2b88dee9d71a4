"""Refresh and drift (issue #10): the world changed behind the orchestrator's back after a finished run."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from adapters.base import Systems
from adapters.sim.world import VM, SimWorld
from config.load import simulated_deployment
from journal import Journal, kinds
from orchestrator import _format, api
from orchestrator._refresh import completed_steps
from orchestrator._trust import trusted_key
from orchestrator.cli import cli
from orchestrator.clock import FakeClock
from orchestrator.steps.base import URI
from orchestrator.wiring import open_systems
from tests.orchestrator.conftest import simulate

MANAGER = "pexip-mgr"
GONE = "pexip-conf-00001"


async def behind_its_back(sim: api.SimulationSettings, change: Callable[[Systems, SimWorld], Awaitable[None]]) -> None:
    """Change the simulated world as an administrator (or a lost datastore) would, not through the orchestrator."""
    deployment = simulated_deployment(sim.nodes, Path(f"{sim.world}.d"))
    world = SimWorld.open(sim.world)
    systems = open_systems(deployment, world, journal=sim.journal)
    try:
        await change(systems, world)
    finally:
        await systems.aclose()
        await world.aclose()


async def enable_ssh(systems: Systems, world: SimWorld) -> None:
    await systems.pexip.patch(f"{URI}global/1/", {"enable_ssh": True})


async def delete_vm(systems: Systems, world: SimWorld) -> None:
    await world.apply([(VM, GONE, None)])


async def finished(sim: api.SimulationSettings) -> api.SimulationSettings:
    """A simulation (a Manager and one Conferencing Node: fast) run to the end; the settings to run it again."""
    sim = dataclasses.replace(sim, nodes=2)
    report, _ = await simulate(sim)
    assert report.exit_code == 0
    return dataclasses.replace(sim, fresh=False)


def events(sim: api.SimulationSettings, *names: str) -> list[Any]:
    with Journal.open(sim.journal) as j:
        return list(j.events(kinds=list(names)))


async def global_ssh(sim: api.SimulationSettings) -> Any:
    seen: dict[str, Any] = {}

    async def read(systems: Systems, world: SimWorld) -> None:
        seen.update(await systems.pexip.get(f"{URI}global/1/"))

    await behind_its_back(sim, read)
    return seen["enable_ssh"]


async def test_a_changed_setting_is_journaled_as_drift_and_reapplied(sim: api.SimulationSettings) -> None:
    """`run` after SSH was turned on behind its back journals drift_detected, turns it off again, stays done."""
    sim = await finished(sim)
    await behind_its_back(sim, enable_ssh)
    report, _ = await simulate(sim)
    assert report.exit_code == 0
    (drift,) = events(sim, kinds.DRIFT_DETECTED)
    assert (drift.node, drift.step) == (MANAGER, "global_settings")
    assert drift.payload["fields"] == ["global.enable_ssh"]
    assert drift.payload["observed"] == {"global.enable_ssh": True}
    assert drift.payload["expected"] == {"global.enable_ssh": False}
    assert await global_ssh(sim) is False
    with Journal.open(sim.journal) as j:
        after = [(e.kind, e.step) for e in j.events(node=MANAGER) if e.seq > drift.seq]
        assert after == [(kinds.STEP_STARTED, "global_settings"), (kinds.STEP_COMMITTED, "global_settings")]
        assert j.node(MANAGER).state == "ldap_authenticated"  # type: ignore[union-attr]
        assert j.verify().ok


async def test_a_second_run_after_the_repair_writes_nothing(sim: api.SimulationSettings) -> None:
    """Once the drift is re-applied, another run finds nothing: no drift event, no change to the world."""
    sim = await finished(sim)
    await behind_its_back(sim, enable_ssh)
    _, repaired = await simulate(sim)
    with Journal.open(sim.journal) as j:
        seen = max(e.seq for e in j.events())
    report, again = await simulate(sim)
    assert report.exit_code == 0 and again == repaired
    assert len(events(sim, kinds.DRIFT_DETECTED)) == 1
    with Journal.open(sim.journal) as j:
        # Only the run's own records (its start and recap): not one event about a node.
        assert [e.node for e in j.events() if e.seq > seen and e.node is not None] == []


async def test_a_deleted_vm_fails_its_node_with_the_repair_command(sim: api.SimulationSettings) -> None:
    """A VM gone from vCenter fails that node (exit 1) naming node, step, what was found and the command."""
    sim = await finished(sim)
    await behind_its_back(sim, delete_vm)
    report, _ = await simulate(sim)
    assert report.exit_code == 1
    reason = report.outcomes[GONE].reason
    assert GONE in reason and "deploy_ova" in reason and "vm is None" in reason
    assert f"orchestrator resume {GONE} --from-step deploy_ova" in reason
    assert type(report.outcomes[MANAGER]).__name__ == "Done"
    with Journal.open(sim.journal) as j:
        assert j.node(GONE).state == "failed"  # type: ignore[union-attr]
        assert j.verify().ok
    assert ("deploy_ova", False) in [(e.step, e.payload["reversible"]) for e in events(sim, kinds.DRIFT_DETECTED)]


async def test_the_repair_command_redeploys_the_node(sim: api.SimulationSettings) -> None:
    """The command the failure names brings the node back to ldap_authenticated on a new VM."""
    sim = await finished(sim)
    await behind_its_back(sim, delete_vm)
    await simulate(sim)
    deployment = simulated_deployment(sim.nodes, Path(f"{sim.world}.d"))
    world = SimWorld.open(sim.world)
    try:
        # As `resume` opens it: verified against the simulation's key, which then signs every head it writes (a writer
        # without the key would leave the head signature behind and the next `simulate` would refuse the journal).
        trust = trusted_key(None, sim.journal)
        with api.open_journal(sim.journal, trust=trust, what="repair") as journal:
            report = await api.drive(
                deployment, journal, world=world, hooks=world, retry=[GONE], from_step="deploy_ova", clock=FakeClock()
            )
    finally:
        await world.aclose()
    assert report.exit_code == 0
    again, _ = await simulate(sim)
    assert again.exit_code == 0


def fingerprint(sim: api.SimulationSettings) -> dict[str, Any]:
    """Bytes and mtime of the journal and world files, and what their WAL files hold (a reader may leave one empty)."""
    out: dict[str, Any] = {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in (sim.journal, sim.world)}
    for wal in (Path(f"{sim.journal}-wal"), Path(f"{sim.world}-wal")):
        out[str(wal)] = wal.read_bytes() if wal.exists() else b""
    return out


async def drift_both(systems: Systems, world: SimWorld) -> None:
    await enable_ssh(systems, world)
    await delete_vm(systems, world)


async def test_dry_run_shows_drift_of_done_nodes_and_changes_nothing(
    sim: api.SimulationSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan lists the changed setting and the deleted VM as "drift" rows; journal and world stay as they were."""
    sim = await finished(sim)
    await behind_its_back(sim, drift_both)
    before = fingerprint(sim)
    deployment = simulated_deployment(sim.nodes, Path(f"{sim.world}.d"))
    world = SimWorld.open(sim.world)
    systems = open_systems(deployment, world, journal=sim.journal)  # its bootstrap store: beside the journal
    try:
        with api.open_readonly_journal(sim.journal) as journal:
            result = await api.plan_steps(deployment, journal, systems=systems)
    finally:
        await systems.aclose()
        await world.aclose()
    assert fingerprint(sim) == before
    mgr = [(r["step"], r["status"], r["reversible"]) for r in result.nodes[MANAGER] if r.get("refresh")]
    assert mgr == [("global_settings", "drift", True)]
    gone = [r for r in result.nodes[GONE] if r.get("refresh")]
    assert (gone[0]["step"], gone[0]["status"], gone[0]["reversible"]) == ("deploy_ova", "drift", False)
    assert gone[0]["changes"][0]["now"] is None
    _format.plan(result, as_json=False)
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert [ln for ln in lines if "* global_settings" in ln and " drift" in ln and "(run re-applies it)" in ln]
    assert [ln for ln in lines if "* deploy_ova" in ln and " drift" in ln and "(run fails the node" in ln]


def test_status_refresh_reports_drift_read_only(
    sim: api.SimulationSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`status --refresh --json` gives each node its drift; nothing is written to the journal or the world."""
    sim = asyncio.run(finished(sim))
    asyncio.run(behind_its_back(sim, drift_both))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    before = fingerprint(sim)
    result = CliRunner().invoke(cli, ["--journal", str(sim.journal), "status", "--refresh", "--json"])
    assert result.exit_code == 0, result.output
    assert fingerprint(sim) == before
    nodes = {n["node"]: n for n in json.loads(result.stdout)["nodes"]}
    assert [(d["step"], d["reversible"]) for d in nodes[MANAGER]["drift"]] == [("global_settings", True)]
    assert nodes[MANAGER]["drift"][0]["changes"] == [{"field": "global.enable_ssh", "now": True, "wanted": False}]
    assert nodes[GONE]["drift"][0]["step"] == "deploy_ova"
    assert nodes[GONE]["state"] == "ldap_authenticated"  # the journal is not changed by looking
    text = CliRunner().invoke(cli, ["--journal", str(sim.journal), "status", "--refresh"])
    assert f"{MANAGER}: drift in global_settings (run re-applies it): global.enable_ssh: True -> False" in text.stdout
    assert f"{GONE}: drift in deploy_ova (run fails the node)" in text.stdout


def test_journal_verify_passes_after_drift_events(
    sim: api.SimulationSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """drift_detected, the in-place repair and the drift failure keep the chain, rows and signed checkpoints intact."""
    sim = asyncio.run(finished(sim))
    asyncio.run(behind_its_back(sim, drift_both))
    asyncio.run(simulate(sim))
    with Journal.open(sim.journal) as j:
        report = j.verify()
        assert report.ok, report.problems
        assert {e.node for e in j.events(kinds=[kinds.DRIFT_DETECTED])} == {MANAGER, GONE}
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["--journal", str(sim.journal), "journal", "verify"])
    assert result.exit_code == 0, result.output
    assert ": VERIFIED: " in result.stdout


async def test_drift_is_counted_in_the_metrics(sim: api.SimulationSettings) -> None:
    """`/metrics` counts the journal's drift_detected events per step (orchestrator_drift_total)."""
    from orchestrator._journal_api import status
    from orchestrator.http._metrics import render

    sim = await finished(sim)
    await behind_its_back(sim, enable_ssh)
    await simulate(sim)
    with Journal.open(sim.journal) as j:
        text = render(j, status(j)).decode()
    assert 'orchestrator_drift_total{step="global_settings"} 1.0' in text


@pytest.mark.parametrize(
    ("role", "state", "failed_from", "first", "last"),
    [
        ("management", "new", None, None, None),  # nothing done, nothing to refresh
        ("management", "reserved", None, "deploy_ova", "reserve_resources"),  # two milestones done
        ("management", "hardening", None, "deploy_ova", "verify_admin_login"),  # not the milestone in progress
        ("management", "awaiting_approval", None, "deploy_ova", "verify_admin_login"),  # waiting in hardening
        ("conferencing", "failed", "installing", "deployment_file", "lock_bios"),  # where it failed from
        ("management", "ldap_authenticated", None, "deploy_ova", "disable_local_auth"),  # done: every step
    ],
)
def test_completed_steps_are_those_of_the_milestones_reached(
    role: str, state: str, failed_from: str | None, first: str | None, last: str | None
) -> None:
    """A refresh observes the steps of every milestone the node completed, in lifecycle order, and no other."""
    steps = [s for _, s in completed_steps(role, state, failed_from)]
    assert (steps[0] if steps else None, steps[-1] if steps else None) == (first, last)


async def test_transient_errors_while_refreshing_are_retried(sim: api.SimulationSettings) -> None:
    """Timeouts injected into the refresh's reads and the repair are retried: the drift is still re-applied."""
    sim = await finished(sim)
    await behind_its_back(sim, enable_ssh)
    report, _ = await simulate(sim, faults="transient=0.05,seed=3")
    assert report.exit_code == 0, {n: a.reason for n, a in report.outcomes.items()}
    assert await global_ssh(sim) is False


def test_configured_cli_reports_then_reapplies_a_changed_reservation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a deployment file (`init --sim`): `status --refresh` and `run --dry-run` show a reservation changed
    behind the orchestrator's back, read-only; `resume --all` re-applies it; then the refresh finds nothing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_JOURNAL", raising=False)
    config = tmp_path / "orchestrator.toml"
    assert CliRunner().invoke(cli, ["init", "--sim", str(config)]).exit_code == 0
    manager = "pexip-mgmt"

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(cli, ["-c", str(config), *args], catch_exceptions=False)

    assert invoke("run").exit_code == 3  # the Manager waits for the security wizard's approval
    world_file = tmp_path / "world.sqlite"

    async def lower_cpu_shares() -> None:  # an administrator in the vSphere client
        async with SimWorld.open(world_file) as world:
            vm = world.get(VM, manager)
            await world.apply([(VM, manager, {**vm, "reservation": {**vm["reservation"], "cpu_shares": "low"}})])

    asyncio.run(lower_cpu_shares())
    journal = tmp_path / "journal.sqlite"
    files = api.SimulationSettings(journal=journal, world=world_file)
    before = fingerprint(files)
    refreshed = invoke("status", "--refresh", "--json")
    assert refreshed.exit_code == 0, refreshed.output
    mgr = next(n for n in json.loads(refreshed.stdout)["nodes"] if n["node"] == manager)
    assert mgr["drift"] == [
        {
            "milestone": "reserved",
            "step": "reserve_resources",
            "status": "drift",
            "reversible": True,
            "changes": [{"field": "cpu_shares", "now": "low", "wanted": "normal"}],
        }
    ]
    planned = invoke("run", "--dry-run", "--json")
    rows = json.loads(planned.stdout)["nodes"][manager]
    assert [r["step"] for r in rows if r.get("status") == "drift"] == ["reserve_resources"]
    assert fingerprint(files) == before
    assert invoke("approve", manager, "security_wizard", "--by", "alice").exit_code == 0
    resumed = invoke("resume", "--all")
    assert resumed.exit_code == 0, resumed.output
    after = invoke("status", "--refresh", "--json")
    assert all(n["drift"] == [] for n in json.loads(after.stdout)["nodes"])
    assert [e.step for e in events(files, kinds.DRIFT_DETECTED)] == ["reserve_resources"]
    secrets = [f.read_text().strip() for f in (tmp_path / "secrets").iterdir()]
    assert secrets and not any(v.encode() in journal.read_bytes() for v in secrets)
