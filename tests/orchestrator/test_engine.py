"""The engine against the simulated world: outcomes, idempotence, faults, gates, leases, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.world import SimWorld
from config.errors import ConfigError, DefinitionChanged, ResourceLocked
from config.load import simulated_deployment
from journal import Journal
from machines.plan import Blocked, Done, Held, Stopped, Wait
from orchestrator import api
from orchestrator.clock import FakeClock
from tests.orchestrator.conftest import simulate


def _states(journal_path: Path) -> dict[str, str]:
    with Journal.open(journal_path) as j:
        return {r.name: r.state for r in j.nodes()}


async def test_simulation_reaches_ldap_authenticated_and_verifies(sim: api.SimulationSettings) -> None:
    """4 nodes end ldap_authenticated, each non-repeatable effect happened once, the journal verifies."""
    report, effects = await simulate(sim)
    assert report.exit_code == 0
    assert set(_states(sim.journal).values()) == {"ldap_authenticated"}
    assert json.loads(sim.effects_out.read_text()) == effects
    manager = "pexip-mgr"
    for node, kinds in effects.items():
        assert kinds.get("vm_import") == 1, node
        assert kinds.get("csr_create") == 1, node
    assert effects[manager]["installation_wizard"] == 1
    assert effects[manager]["security_wizard"] == 1
    assert effects[manager]["role_create"] == 1
    with Journal.open(sim.journal) as j:
        assert j.verify().ok


async def test_second_run_changes_nothing(sim: api.SimulationSettings) -> None:
    """Running a finished simulation again applies no change to the world."""
    await simulate(sim)
    _, before = await simulate(sim)
    report, after = await simulate(sim)
    assert report.exit_code == 0 and after == before


async def test_rewind_reruns_steps_without_side_effects(sim: api.SimulationSettings, tmp_path: Path) -> None:
    """`resume --from-step reserve_resources` re-verifies every later step and changes nothing."""
    _, before = await simulate(sim)
    deployment = simulated_deployment(4, Path(f"{sim.world}.d"))
    world = SimWorld.open(sim.world)
    try:
        with api.open_journal(sim.journal) as journal:
            report = await api.drive(
                deployment,
                journal,
                world=world,
                hooks=world,
                retry=["pexip-conf-00002"],
                from_step="reserve_resources",
                clock=FakeClock(),
            )
            steps = [e.step for e in journal.events(node="pexip-conf-00002", kinds=["step_committed"])]
        after = world.effects_summary()
    finally:
        await world.aclose()
    assert report.exit_code == 0
    assert after == before
    assert steps.count("reserve_resources") == 2 and steps.count("sip_tls_fqdn") == 2


async def test_permanent_fault_fails_the_node_and_blocks_the_others(sim: api.SimulationSettings) -> None:
    """A permanent fault on the Manager fails it with the reason; Conferencing Nodes stay blocked."""
    report, _ = await simulate(sim, faults="permanent=global_settings@pexip-mgr")
    assert report.exit_code == 1
    assert isinstance(report.outcomes["pexip-mgr"], Stopped)
    assert "injected permanent fault" in report.outcomes["pexip-mgr"].reason
    assert all(isinstance(report.outcomes[n], Blocked) for n in report.outcomes if n != "pexip-mgr")
    with Journal.open(sim.journal) as j:
        mgr = j.node("pexip-mgr")
        assert (mgr.state, mgr.failed_from, mgr.step) == ("failed", "hardening", "global_settings")
        assert "global_settings" in mgr.last_error


async def test_resume_after_a_fixed_fault_finishes(sim: api.SimulationSettings) -> None:
    """A failed node is retried by resume and the deployment completes."""
    await simulate(sim, faults="permanent=reserve_resources@pexip-conf-00001")
    deployment = simulated_deployment(4, Path(f"{sim.world}.d"))
    world = SimWorld.open(sim.world)
    try:
        with api.open_journal(sim.journal) as journal:
            report = await api.drive(
                deployment,
                journal,
                world=world,
                hooks=world,
                retry=["pexip-conf-00001"],
                clock=FakeClock(),
                auto_approve=True,
            )
            kinds = [e.kind for e in journal.events(node="pexip-conf-00001")]
    finally:
        await world.aclose()
    assert report.exit_code == 0
    assert "step_failed" in kinds and "retried" in kinds


async def test_transient_faults_are_retried_with_backoff(sim: api.SimulationSettings) -> None:
    """With 3% transient errors per call every node still finishes; retries are journaled with their delay."""
    # Which call draws which fault depends on how the nodes interleave: with the barrier (#11) seed 3 made the
    # Manager's install_certificate (about 15 calls an attempt) fail 5 attempts running in about half the runs.
    report, effects = await simulate(sim, faults="transient=0.03,seed=5")
    assert report.exit_code == 0
    with Journal.open(sim.journal) as j:
        retries = list(j.events(kinds=["step_retry"]))
    assert retries, "a 3% error rate over hundreds of calls must cause retries"
    assert all(e.payload["retry_in_s"] > 0 for e in retries)
    assert all(effects[n].get("vm_import") == 1 for n in effects)


async def test_retry_gives_up_after_max_attempts(sim: api.SimulationSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that keeps failing transiently fails the node after policy.retry.max_attempts, not forever."""
    from adapters.sim.console import SimConsole
    from config.errors import Unreachable

    async def unreachable(self: Any, node: Any) -> str:
        # A stand-in for a console that never answers: the twin has no such fault of its own.
        raise Unreachable("console: connection refused")

    monkeypatch.setattr(SimConsole, "wizard_state", unreachable)
    report, _ = await simulate(sim)
    assert report.exit_code == 1
    with Journal.open(sim.journal) as j:
        mgr = j.node("pexip-mgr")
        starts = list(j.events(node="pexip-mgr", kinds=["step_started"]))
        retries = list(j.events(node="pexip-mgr", kinds=["step_retry"]))
    assert (mgr.state, mgr.step) == ("failed", "installation_wizard")
    assert [e.attempt for e in starts if e.step == "installation_wizard"] == [
        1,
        2,
        3,
        4,
        5,
    ]  # policy retry.max_attempts
    delays = [e.payload["retry_in_s"] for e in retries]
    assert len(delays) == 4 and delays == sorted(delays), "backoff grows"


async def _manual_run(settings: api.SimulationSettings, **kwargs: Any) -> Any:
    deployment = simulated_deployment(settings.nodes, Path(f"{settings.world}.d"))
    world = SimWorld.open(settings.world)
    try:
        with api.open_journal(settings.journal) as journal:
            return await api.drive(deployment, journal, world=world, hooks=world, clock=FakeClock(), **kwargs)
    finally:
        await world.aclose()


async def test_security_wizard_waits_for_approval(sim: api.SimulationSettings) -> None:
    """Without approval the Manager waits in awaiting_approval (exit 3); approve, run, done."""
    report = await _manual_run(sim)
    assert report.exit_code == 3
    assert isinstance(report.outcomes["pexip-mgr"], Wait)
    assert _states(sim.journal)["pexip-mgr"] == "awaiting_approval"
    with api.open_journal(sim.journal) as journal:
        st = api.status(journal, "pexip-mgr")[0]
        assert st["gate"] == "security_wizard" and st["next"]["action"] == "wait"
        api.approve(journal, "pexip-mgr", "security_wizard", by="alice", reason="CHG-1")
    report = await _manual_run(sim)
    assert report.exit_code == 0
    with Journal.open(sim.journal) as j:
        opened = [e for e in j.events(kinds=["gate_opened"]) if e.payload.get("gate") == "security_wizard"]
    assert opened[0].actor == "alice" and opened[0].payload["reason"] == "CHG-1"


async def test_maintenance_holds_a_node_in_place(sim: api.SimulationSettings) -> None:
    """A node in maintenance is left where it is (exit 3) and continues once maintenance is off."""
    await simulate(sim, faults="")  # create the journal
    with api.open_journal(sim.journal) as journal:
        api.set_maintenance(journal, "pexip-conf-00003", True, by="bob", reason="host work")
    with Journal.open(sim.journal) as j:
        assert j.node("pexip-conf-00003").maintenance


async def test_maintenance_before_start(sim: api.SimulationSettings) -> None:
    """Maintenance set before a node starts keeps it new while the others finish."""
    deployment = simulated_deployment(4, Path(f"{sim.world}.d"))
    with api.open_journal(sim.journal) as journal:
        journal.ensure_nodes((n.name, n.role, "new") for n in deployment.nodes)
        api.set_maintenance(journal, "pexip-conf-00003", True, by="bob", reason="host work")
    report = await _manual_run(sim, auto_approve=True)
    assert isinstance(report.outcomes["pexip-conf-00003"], Held)
    assert report.exit_code == 3
    assert _states(sim.journal)["pexip-conf-00003"] == "new"
    with api.open_journal(sim.journal) as journal:
        api.set_maintenance(journal, "pexip-conf-00003", False, by="bob")
    report = await _manual_run(sim, auto_approve=True)
    assert report.exit_code == 0 and isinstance(report.outcomes["pexip-conf-00003"], Done)


async def test_until_stops_every_node_at_the_milestone(sim: api.SimulationSettings) -> None:
    """--until reserved leaves the Manager reserved; nothing later is touched."""
    report = await _manual_run(sim, until="reserved", auto_approve=True)
    states = _states(sim.journal)
    assert states["pexip-mgr"] == "reserved"
    assert isinstance(report.outcomes["pexip-mgr"], Done)


async def test_definition_change_is_refused_unless_allowed(sim: api.SimulationSettings) -> None:
    """A journal from another lifecycle definition is refused; --allow-version-change journals it."""
    with Journal.open(sim.journal) as j:
        j.set_meta("definition_hash", "0" * 64)
    with pytest.raises(DefinitionChanged, match="allow-version-change"):
        with api.open_journal(sim.journal):
            pass
    with api.open_journal(sim.journal, allow_version_change=True) as journal:
        assert journal.last_event(None, kind="definition_changed") is not None


async def test_a_second_orchestrator_gets_a_clear_lock_error(sim: api.SimulationSettings) -> None:
    """Another live process's lease on a node is reported with its pid, never waited on."""
    deployment = simulated_deployment(4, Path(f"{sim.world}.d"))
    with api.open_journal(sim.journal) as journal:
        journal.ensure_nodes((n.name, n.role, "new") for n in deployment.nodes)
        # pid 1 is alive on every Linux machine: a live foreign holder.
        journal.acquire_leases(["pexip-conf-00001"], owner="other-host-less:1:x", pid=1, timeout_s=3600)
    with pytest.raises(ResourceLocked, match="pexip-conf-00001 is locked by pid 1"):
        await _manual_run(sim, auto_approve=True)


async def test_dry_run_plans_without_changing_anything(sim: api.SimulationSettings) -> None:
    """A plan on an empty world lists the first change and marks what follows unknown; no effect is applied."""
    deployment = simulated_deployment(4, Path(f"{sim.world}.d"))
    world = SimWorld.open(sim.world)
    try:
        result = await api.plan_steps(deployment, None, world=world)
        assert world.effects_summary() == {}
    finally:
        await world.aclose()
    mgr = result.nodes["pexip-mgr"]
    assert mgr[0]["step"] == "deploy_ova" and mgr[0]["status"] == "change"
    assert mgr[0]["changes"][0]["now"] is None
    assert all(r["status"] == "unknown" for r in mgr[1:])


async def test_dry_run_after_completion_is_all_ok(sim: api.SimulationSettings) -> None:
    """After a full run, rewinding the plan to the start finds every step already right."""
    await simulate(sim)
    deployment = simulated_deployment(4, Path(f"{sim.world}.d"))
    world = SimWorld.open(sim.world)
    try:
        result = await api.plan_steps(deployment, None, world=world)
    finally:
        await world.aclose()
    bad = [
        (n, r["step"], r.get("changes") or r.get("reason"))
        for n, rows in result.nodes.items()
        for r in rows
        if r["status"] != "ok"
    ]
    assert bad == []


async def test_unknown_fault_step_is_bad_input(sim: api.SimulationSettings) -> None:
    """--faults naming a step that does not exist is refused before anything runs."""
    with pytest.raises(ConfigError, match="--faults"):
        await simulate(sim, faults="permanent=no_such_step")
    assert not sim.journal.exists()


async def test_simulation_node_count_mismatch_is_bad_input(sim: api.SimulationSettings) -> None:
    """Resuming a simulation with another --nodes is refused with the fix (--fresh)."""
    await simulate(sim)
    with pytest.raises(ConfigError, match="--fresh"):
        await simulate(sim, nodes=5)


async def test_concurrency_is_bounded_globally_and_per_host(
    sim: api.SimulationSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No more vSphere side effects at once on a host than its max_concurrent, nor steps than --concurrency."""
    import asyncio

    from adapters.sim.vsphere import SimVSphere

    in_flight: dict[str, int] = {}
    peak: dict[str, int] = {}
    original = SimVSphere.set_reservation

    async def counting(self: Any, vm: Any, wanted: Any) -> None:
        # A counting wrapper around the twin (not a mock): it still applies the change.
        in_flight[vm.host] = in_flight.get(vm.host, 0) + 1
        peak[vm.host] = max(peak.get(vm.host, 0), in_flight[vm.host])
        try:
            await asyncio.sleep(0.01)
            await original(self, vm, wanted)
        finally:
            in_flight[vm.host] -= 1

    monkeypatch.setattr(SimVSphere, "set_reservation", counting)
    report, _ = await simulate(sim, nodes=9)
    assert report.exit_code == 0
    deployment = simulated_deployment(9, Path(f"{sim.world}.d"))
    limits = {h.name: h.max_concurrent for h in deployment.vcenter.hosts}
    assert peak and all(peak[h] <= limits[h] for h in peak), (peak, limits)
    assert max(peak.values()) == 2, "8 Conferencing Nodes on one host do overlap up to the limit"


async def test_from_step_cannot_jump_forward(sim: api.SimulationSettings) -> None:
    """`resume --from-step` to a step the node has not reached is bad input, and nothing moves."""
    await _manual_run(sim, until="reserved", nodes=["pexip-mgr"], auto_approve=True)
    with pytest.raises(ConfigError, match="cannot go forward"):
        await _manual_run(sim, retry=["pexip-mgr"], from_step="create_csr", auto_approve=True)
    with pytest.raises(ConfigError, match="not a step"):
        await _manual_run(sim, retry=["pexip-mgr"], from_step="make_coffee", auto_approve=True)
    assert _states(sim.journal)["pexip-mgr"] == "reserved"


async def test_waiting_for_sync_is_bounded_by_time_not_attempts(
    sim: api.SimulationSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that never syncs is waited for past max_attempts, until retry.wait_timeout_s, then fails saying so."""
    from adapters.sim.pexip import SimPexipApi

    original = SimPexipApi.status

    async def never_synced(self: Any, resource: str, **filters: Any) -> list[dict[str, Any]]:
        # The twin's answer for every node but one, which stays PENDING (a node that never syncs).
        rows = await original(self, resource, **filters)
        return [{**r, "sync_status": "PENDING"} if r.get("name") == "pexip-conf-00001" else r for r in rows]

    monkeypatch.setattr(SimPexipApi, "status", never_synced)
    report, _ = await simulate(sim)
    assert report.exit_code == 1
    with Journal.open(sim.journal) as j:
        node = j.node("pexip-conf-00001")
        attempts = [
            e.attempt for e in j.events(node="pexip-conf-00001", kinds=["step_started"]) if e.step == "register_node"
        ]
        waited = sum(e.payload["retry_in_s"] for e in j.events(node="pexip-conf-00001", kinds=["step_retry"]))
    assert (node.state, node.step) == ("failed", "register_node")
    assert "wait_timeout_s" in node.last_error
    assert len(attempts) > 5  # more than retry.max_attempts
    assert 900 * 0.9 <= waited <= 900 + 40  # the policy's wait_timeout_s, plus one last backoff
    assert isinstance(report.outcomes["pexip-conf-00002"], Done)


async def test_crash_restarts_do_not_use_up_the_retry_budget(
    sim: api.SimulationSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step started 7 times before (crashes) still gets its full retry budget for a transient error."""
    from adapters.sim.console import SimConsole
    from config.errors import Unreachable

    report = await _manual_run(sim, until="bios_locked", nodes=["pexip-mgr"], auto_approve=True)
    assert report.exit_code == 0
    with api.open_journal(sim.journal) as journal:  # as if killed 7 times right after step_started
        from journal import Transition

        journal.commit(
            [
                Transition(
                    node="pexip-mgr",
                    kind="step_started",
                    step="installation_wizard",
                    attempt=7,
                    from_state="bios_locked",
                    to_state="installing",
                    update={"step": "installation_wizard", "attempt": 7},
                )
            ]
        )
    calls = {"n": 0}
    original = SimConsole.wizard_state

    async def flaky(self: Any, node: Any) -> str:
        # Fails twice, then answers: a stand-in for a console that is slow to come up.
        calls["n"] += 1
        if calls["n"] <= 2:
            raise Unreachable("console: connection refused")
        return await original(self, node)

    monkeypatch.setattr(SimConsole, "wizard_state", flaky)
    report = await _manual_run(sim, until="installed", nodes=["pexip-mgr"], auto_approve=True)
    assert report.exit_code == 0, report.outcomes
    assert calls["n"] > 2
    with Journal.open(sim.journal) as j:
        delays = [e.payload["retry_in_s"] for e in j.events(node="pexip-mgr", kinds=["step_retry"])]
    assert delays and delays[0] <= 0.6  # the first backoff (0.5 s +-20%), not the 8th


async def test_an_unset_secret_fails_the_node_with_a_domain_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret whose environment variable is gone fails its step as a journaled domain error naming the variable."""
    import dataclasses

    from config.secrets import Secret
    from orchestrator.engine import Engine
    from orchestrator.wiring import open_systems

    monkeypatch.delenv("ORCH_TEST_UNSET_SNMP", raising=False)
    deployment = simulated_deployment(1, tmp_path / "world.d")
    snmp = dataclasses.replace(deployment.snmp, authentication_password=Secret("env:ORCH_TEST_UNSET_SNMP"))
    deployment = dataclasses.replace(deployment, snmp=snmp)
    world = SimWorld.open(tmp_path / "world.sqlite")
    systems = open_systems(deployment, world)
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            report = await Engine(deployment, journal, systems, clock=FakeClock(), hooks=world, auto_approve=True).run()
            failed = list(journal.events(kinds=["step_failed"]))
    finally:
        await systems.aclose()
        await world.aclose()
    assert report.exit_code == 1
    assert [(e.step, e.payload["error_type"]) for e in failed] == [("snmpv3", "SecretUnavailable")]
    assert "ORCH_TEST_UNSET_SNMP is not set" in failed[0].payload["error"]
