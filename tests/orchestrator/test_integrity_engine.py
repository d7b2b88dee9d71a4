"""The engine acts on the events, not on rows one can edit; every change and every operator's word is on the record.

Each test is an attack or a mistake of issue #7 (findings 1, 6, 11 and the fixed wizard text), written first.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.world import SimWorld
from config.errors import IntegrityError, Unreachable
from config.load import simulated_deployment
from config.model import Deployment
from journal import Journal, kinds
from machines.lifecycle import STEPS
from machines.plan import Held
from orchestrator import api
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems

MGR = "pexip-mgr"


class Hooks:
    """The world's fault hooks, plus a test's own callback after a step's side effects (why: a precise moment)."""

    def __init__(
        self,
        world: SimWorld,
        after: Callable[[str, str], None] | None = None,
        before: Callable[[str, str], None] | None = None,
    ) -> None:
        self.world, self.after, self.before = world, after, before

    def before_step(self, node: str, step: str) -> None:
        self.world.before_step(node, step)
        if self.before:
            self.before(node, step)

    def after_apply(self, node: str, step: str) -> None:
        self.world.after_apply(node, step)
        if self.after:
            self.after(node, step)


async def _engine_run(
    deployment: Deployment,
    journal: Journal,
    world: SimWorld,
    hooks: Any = None,
    prepare: Callable[[Engine], None] | None = None,
    **run: Any,
) -> Any:
    systems = open_systems(deployment, world)
    try:
        engine = Engine(deployment, journal, systems, clock=FakeClock(), hooks=hooks or world, auto_approve=True)
        engine.load()
        if prepare:
            prepare(engine)
        return await engine.run(**run)
    finally:
        await systems.aclose()


async def _fail_at_security_wizard(tmp_path: Path) -> tuple[Deployment, Path, Path]:
    """A 2-node simulation whose Manager failed for good at the security wizard (finding 1's start)."""
    deployment = simulated_deployment(2, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite", faults=f"permanent=security_wizard@{MGR}")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            report = await _engine_run(deployment, journal, world)
    finally:
        await world.aclose()
    assert report.exit_code == 1
    return deployment, tmp_path / "journal.sqlite", tmp_path / "world.sqlite"


async def test_an_edited_step_column_cannot_skip_the_security_wizard(tmp_path: Path) -> None:
    """Finding 1: `UPDATE nodes SET step='global_settings'` on a failed Manager; resume refuses and changes nothing."""
    deployment, journal_path, world_path = await _fail_at_security_wizard(tmp_path)
    with sqlite3.connect(journal_path) as db:
        db.execute("UPDATE nodes SET step = 'global_settings' WHERE name = ?", (MGR,))
    world = SimWorld.open(world_path)  # the fault is fixed: only the row edit stands in the way
    try:
        with api.open_journal(journal_path) as journal:
            before = journal.statistics()["last_seq"]
            with pytest.raises(
                IntegrityError, match=r"pexip-mgr: row step='global_settings' but its events say 'security_wizard'"
            ):
                await _engine_run(deployment, journal, world, retry=[MGR])
            assert journal.statistics()["last_seq"] == before
        assert "security_wizard" not in world.effects_summary().get(MGR, {})
    finally:
        await world.aclose()


@pytest.mark.parametrize(
    "column,value",
    [
        ("state", "hardened"),  # the failed Manager promoted past the wizard
        ("failed_from", "certifying"),  # a retry sent into a later milestone
        ("maintenance", 1),  # maintenance that no operator set
        ("gate", "certificate"),  # a gate no step waits on
        ("attempt", 9),  # an attempt number no start journaled
    ],
)
async def test_any_edited_place_column_is_refused(tmp_path: Path, column: str, value: Any) -> None:
    """Each column the engine acts on must equal its events: an edited one stops the run before anything happens."""
    deployment, journal_path, world_path = await _fail_at_security_wizard(tmp_path)
    with sqlite3.connect(journal_path) as db:
        db.execute(f"UPDATE nodes SET {column} = ? WHERE name = ?", (value, MGR))
    world = SimWorld.open(world_path)
    try:
        with (
            api.open_journal(journal_path) as journal,
            pytest.raises(IntegrityError, match=f"pexip-mgr: row {column}="),
        ):
            await _engine_run(deployment, journal, world, retry=[MGR])
    finally:
        await world.aclose()


async def test_a_milestone_completes_only_when_every_step_committed(tmp_path: Path) -> None:
    """A Manager whose in-memory step jumps to hardening's last step still runs the security wizard first."""
    deployment, journal_path, world_path = await _fail_at_security_wizard(tmp_path)

    def jump(engine: Engine) -> None:
        engine._models[MGR].step = "location_qos"  # noqa: SLF001 - the trusted-row mistake, made in memory

    world = SimWorld.open(world_path)
    try:
        with api.open_journal(journal_path) as journal:
            report = await _engine_run(deployment, journal, world, prepare=jump, retry=[MGR])
            commits = [e for e in journal.events(node=MGR, kinds=[kinds.STEP_COMMITTED])]
        effects = world.effects_summary()[MGR]
    finally:
        await world.aclose()
    assert report.exit_code == 0
    assert effects["security_wizard"] == 1
    incomplete = [e for e in commits if e.payload.get("milestone_incomplete")]
    assert [(e.step, e.payload["milestone_incomplete"]) for e in incomplete] == [
        ("location_qos", ["security_wizard", "global_settings", "network_services", "snmpv3"])
    ]
    hardening = STEPS["management"]["hardened"]
    after = [e.step for e in commits if e.seq > incomplete[0].seq and e.step in hardening]
    assert after == list(hardening)


async def test_a_retried_attempts_changes_reach_the_record(tmp_path: Path) -> None:
    """Finding 11: attempt 1 of deploy_ova imports the OVA, then fails; its retry and the commit both list the
    import."""
    deployment = simulated_deployment(1, tmp_path / "world.d")
    fired: list[str] = []

    def flaky(node: str, step: str) -> None:
        if step == "deploy_ova" and not fired:
            fired.append(step)
            raise Unreachable("vsphere: connection reset after the import")

    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            report = await _engine_run(deployment, journal, world, hooks=Hooks(world, after=flaky), until="deployed")
            (retry,) = journal.events(node=MGR, kinds=[kinds.STEP_RETRY])
            (commit,) = (e for e in journal.events(node=MGR, kinds=[kinds.STEP_COMMITTED]) if e.step == "deploy_ova")
        assert world.effects_summary()[MGR]["vm_import"] == 1
    finally:
        await world.aclose()
    assert report.exit_code == 0
    assert [c["field"] for c in retry.payload["changed"]] == ["vm"]
    assert commit.payload["changed"] == retry.payload["changed"]


async def test_an_attempt_failing_inside_apply_records_what_it_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that fails for good while applying journals the changes it began with its step_failed."""
    from adapters.sim.vsphere import SimVSphere
    from config.errors import Rejected

    async def refuse(self: Any, *args: Any) -> None:
        # A stand-in for vCenter refusing the reservation half-way: the twin has no such fault of its own.
        raise Rejected("vsphere: reservation refused half-way")

    monkeypatch.setattr(SimVSphere, "set_reservation", refuse)
    deployment = simulated_deployment(1, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            report = await _engine_run(deployment, journal, world, until="reserved")
            (failed,) = journal.events(node=MGR, kinds=[kinds.STEP_FAILED])
    finally:
        await world.aclose()
    assert report.exit_code == 1
    assert failed.step == "reserve_resources" and "changed" not in failed.payload
    assert "cpu_reservation_mhz" in {c["field"] for c in failed.payload["attempted"]}


async def test_the_security_wizard_record_says_the_answers_applied(tmp_path: Path) -> None:
    """The security wizard's step_committed carries the policy's answers (a customized port too), not a fixed text."""
    deployment = simulated_deployment(1, tmp_path / "world.d")
    wizard = dataclasses.replace(deployment.policy.security_wizard, sip_tls_listen_port=5062)
    deployment = dataclasses.replace(deployment, policy=dataclasses.replace(deployment.policy, security_wizard=wizard))
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            await _engine_run(deployment, journal, world, until="hardened")
            (commit,) = (
                e for e in journal.events(node=MGR, kinds=[kinds.STEP_COMMITTED]) if e.step == "security_wizard"
            )
    finally:
        await world.aclose()
    (change,) = commit.payload["changed"]
    assert change["wanted"] == wizard.settings()
    assert change["wanted"]["sip_tls_listen_port"] == 5062
    assert "FIPS 140-2, no OS access" not in str(commit.payload)


async def test_maintenance_from_another_process_stops_a_running_node_before_its_next_step(tmp_path: Path) -> None:
    """Finding 6: `maintenance on` while the node runs: the running process starts no further step for it."""
    deployment = simulated_deployment(1, tmp_path / "world.d")
    journal_path = tmp_path / "journal.sqlite"
    marked: list[int] = []

    def operator(node: str, step: str) -> None:
        if step == "reserve_resources" and not marked:
            with Journal.open(journal_path) as other:  # another process's connection
                api.set_maintenance(other, node, True, by="bob", reason="host work")
                marked.append(other.statistics()["last_seq"])

    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(journal_path) as journal:
            report = await _engine_run(deployment, journal, world, hooks=Hooks(world, before=operator))
            later = [e for e in journal.events(node=MGR) if e.seq > marked[0]]
            node = journal.node(MGR)
    finally:
        await world.aclose()
    assert isinstance(report.outcomes[MGR], Held) and report.exit_code == 3
    # The step in flight when the operator acted (its start was decided before, and is journaled at the barrier
    # before its side effect, so after the mark: issue #11) ends; no step after it starts.
    started = [e.step for e in later if e.kind in (kinds.STEP_STARTED, kinds.MILESTONE_STARTED)]
    assert set(started) <= {"reserve_resources"}, started
    assert node is not None and node.maintenance and node.state == "reserved"


def test_finding_1_from_the_command_line_exits_4_and_the_wizard_never_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`simulate --faults permanent=security_wizard@pexip-mgr`, edit the step column, `resume --all`: exit 4, no
    wizard."""
    from click.testing import CliRunner

    from orchestrator.cli import cli

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    journal = tmp_path / "j.sqlite"
    first = runner.invoke(
        cli,
        [
            "--journal",
            str(journal),
            "simulate",
            "--nodes",
            "2",
            "--world",
            "w.sqlite",
            "--faults",
            f"permanent=security_wizard@{MGR}",
            "--json",
        ],
    )
    assert first.exit_code == 1, first.output
    with sqlite3.connect(journal) as db:
        db.execute("UPDATE nodes SET step = 'global_settings' WHERE name = ?", (MGR,))
    resumed = runner.invoke(cli, ["--journal", str(journal), "resume", "--all", "--json"])
    assert resumed.exit_code == 4, resumed.output
    world = SimWorld.open(tmp_path / "w.sqlite")
    try:
        assert "security_wizard" not in world.effects_summary().get(MGR, {})
    finally:
        world.close()


async def test_the_certificate_records_name_what_was_installed(tmp_path: Path) -> None:
    """install_certificate's commit names the certificate's subject and serial; trusted_ca_chain names the CAs."""
    deployment = simulated_deployment(1, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            await _engine_run(deployment, journal, world, until="certified")
            commits = {e.step: e for e in journal.events(node=MGR, kinds=[kinds.STEP_COMMITTED])}
            (opened,) = (
                e for e in journal.events(node=MGR, kinds=[kinds.GATE_OPENED]) if e.payload.get("gate") == "certificate"
            )
    finally:
        await world.aclose()
    installed = commits["install_certificate"].payload["changed"][0]
    assert installed["field"] == "tls_certificate" and set(installed["wanted"]) == {"subject", "serial"}
    assert installed["wanted"]["subject"].startswith("CN=") and installed["wanted"]["serial"]
    assert opened.payload["certificate"]
    uploaded = commits["trusted_ca_chain"].payload["changed"][0]["wanted"]["uploaded"]
    assert uploaded and all("CN=" in s for s in uploaded)
