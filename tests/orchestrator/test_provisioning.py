"""The Conferencing Node's bootstrap file, end to end: stored encrypted, uploaded, never journaled or logged."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from adapters.base import Systems
from adapters.bootstrap_store import BootstrapStore, bootstrap_dir
from adapters.sim.world import SimWorld
from config.load import simulated_deployment
from config.model import Deployment
from journal import Journal
from orchestrator import api
from orchestrator.clock import FakeClock
from orchestrator.steps import STEPS, StepContext, execute
from orchestrator.wiring import open_systems
from tests.orchestrator.conftest import simulate

CONF = "pexip-conf-00001"


def _store(sim: api.SimulationSettings) -> BootstrapStore:
    deployment = simulated_deployment(sim.nodes, Path(f"{sim.world}.d"))
    return BootstrapStore(bootstrap_dir(sim.journal), deployment.pexip_api.bootstrap_key, deployment.name)


def _committed(journal: Journal, node: str, step: str) -> list[dict[str, Any]]:
    return [e.payload for e in journal.events(node=node, kinds=["step_committed"]) if e.step == step]


async def test_simulation_provisions_every_conferencing_node(sim: api.SimulationSettings) -> None:
    """Every Conferencing Node gets its file uploaded once and ends ldap_authenticated; the journal keeps the digest."""
    report, effects = await simulate(sim)
    assert report.exit_code == 0
    store = _store(sim)
    with Journal.open(sim.journal) as j:
        assert {r.state for r in j.nodes()} == {"ldap_authenticated"}
        for node in (f"pexip-conf-{i:05d}" for i in range(1, sim.nodes)):
            assert effects[node]["bootstrap_upload"] == 1, node
            [provisioned] = _committed(j, node, "provision_node")
            sha = store.sha256(node)
            assert sha is not None and sha in json.dumps(provisioned)
    assert "bootstrap_upload" not in effects["pexip-mgr"]


async def test_the_bootstrap_file_never_reaches_the_journal_logs_or_export(
    sim: api.SimulationSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The random credential inside a node's bootstrap file is in no journal event, log record or export line."""
    caplog.set_level(logging.DEBUG)
    report, _ = await simulate(sim)
    assert report.exit_code == 0
    store = _store(sim)
    body = store.get(CONF)
    assert body is not None
    marker = json.loads(body)["provisioning_secret"]
    path = store.path(CONF)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert marker.encode() not in path.read_bytes() and b"node_config" not in path.read_bytes()
    export = tmp_path / "export.jsonl"
    with Journal.open(sim.journal) as j:
        events = json.dumps([(e.kind, e.step, e.payload) for e in j.events()])
        j.export_to(export)
    assert marker not in events and "node_config" not in events
    assert marker not in export.read_text()
    assert marker not in caplog.text
    assert marker not in sim.journal.read_bytes().decode("latin-1")


async def test_a_lost_bootstrap_file_recreates_the_worker_vm(tmp_path: Path) -> None:
    """A node whose stored file is lost before it synced gets its worker_vm deleted and posted again, journaled.

    The refresh before the node goes on finds its completed deployment_file drifted and re-applies it in place
    (issue #10, drift): that commit carries the re-creation; provision_node then uploads the new file.
    """
    deployment = simulated_deployment(3, tmp_path / "world.d")
    store = BootstrapStore(
        bootstrap_dir(Path(deployment.journal.path)), deployment.pexip_api.bootstrap_key, deployment.name
    )
    world = SimWorld.open(tmp_path / "world.sqlite", faults=f"permanent=provision_node@{CONF}")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            first = await api.drive(deployment, journal, world=world, hooks=world, auto_approve=True, clock=FakeClock())
            assert first.exit_code == 1 and journal.node(CONF).step == "provision_node"
            assert store.sha256(CONF) is not None
            store.delete(CONF)  # the file is lost; the worker_vm exists and never synced
    finally:
        await world.aclose()
    before = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            second = await api.drive(
                deployment, journal, world=before, hooks=before, retry=[CONF], auto_approve=True, clock=FakeClock()
            )
            assert second.exit_code == 0 and journal.node(CONF).state == "ldap_authenticated"
            first_file, committed = _committed(journal, CONF, "deployment_file")
            assert committed["cause"] == "drift"
            [drift] = [e.payload for e in journal.events(node=CONF, kinds=["drift_detected"])]
            assert drift["fields"] == ["worker_vm"]
        effects = before.effects_summary()[CONF]
    finally:
        await before.aclose()
    [change] = committed["changed"]
    assert change["field"] == "worker_vm" and "deleted and created again" in change["wanted"]
    assert store.sha256(CONF) is not None and store.sha256(CONF) in change["wanted"]
    assert (effects["api_delete"], effects["bootstrap_upload"]) == (1, 1)


class _CrashAfterPost(BootstrapStore):
    """A store whose first write never happens: the process dies between the POST and storing the body."""

    def put(self, node: str, body: bytes, worker: str | None = None) -> str:
        raise KeyboardInterrupt("killed between the worker_vm POST and storing its body")

    async def aput(self, node: str, body: bytes, worker: str | None = None) -> str:  # what the step calls
        return self.put(node, body, worker)


async def _manager_hardened(tmp_path: Path) -> tuple[Deployment, SimWorld, Systems]:
    deployment = simulated_deployment(2, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    with api.open_journal(tmp_path / "journal.sqlite") as journal:
        report = await api.drive(
            deployment,
            journal,
            world=world,
            hooks=world,
            nodes=["pexip-mgr"],
            until="hardened",
            auto_approve=True,
            clock=FakeClock(),
        )
    assert report.exit_code == 0
    return deployment, world, open_systems(deployment, world)


async def test_a_crash_between_the_post_and_the_store_is_recovered(tmp_path: Path) -> None:
    """The replay of deployment_file after a crash that lost the POST answer deletes and re-creates the worker_vm."""
    deployment, world, systems = await _manager_hardened(tmp_path)
    try:
        assert systems.bootstrap is not None
        good = systems.bootstrap
        systems.bootstrap = _CrashAfterPost(good.directory, deployment.pexip_api.bootstrap_key, deployment.name)
        ctx = StepContext(deployment, deployment.node(CONF), systems)
        with pytest.raises(KeyboardInterrupt):
            await execute(STEPS["deployment_file"], ctx)
        assert good.get(CONF) is None and len(world.lookup("pexip:worker_vm", "name", CONF)) == 1
        systems.bootstrap = good
        outcome = await execute(STEPS["deployment_file"], StepContext(deployment, deployment.node(CONF), systems))
        assert outcome is not None
        [change] = outcome.changes
        assert "deleted and created again" in str(change.wanted) and good.get(CONF) is not None
        assert world.effects_summary()[CONF]["api_delete"] == 1
        again = await execute(STEPS["deployment_file"], StepContext(deployment, deployment.node(CONF), systems))
        assert again is not None and again.changes == ()  # stored: nothing more to do
    finally:
        await systems.aclose()
        await world.aclose()


async def test_a_file_left_by_another_worker_vm_is_not_taken_for_this_ones(tmp_path: Path) -> None:
    """A kill between the POST and the store, with a bootstrap file of an EARLIER worker_vm of the node still in
    the store (an earlier deployment beside a new journal): the replay must not take that file for the new
    worker_vm's (the node would never sync with it) but post the worker_vm again and store its own answer."""
    deployment, world, systems = await _manager_hardened(tmp_path)
    try:
        assert systems.bootstrap is not None
        good = systems.bootstrap
        good.put(CONF, b'{"stale": true}', "/api/admin/configuration/v1/worker_vm/999/")
        systems.bootstrap = _CrashAfterPost(good.directory, deployment.pexip_api.bootstrap_key, deployment.name)
        with pytest.raises(KeyboardInterrupt):
            await execute(STEPS["deployment_file"], StepContext(deployment, deployment.node(CONF), systems))
        [worker] = world.lookup("pexip:worker_vm", "name", CONF)
        systems.bootstrap = good
        outcome = await execute(STEPS["deployment_file"], StepContext(deployment, deployment.node(CONF), systems))
        assert outcome is not None and "deleted and created again" in str(outcome.changes[0].wanted)
        assert world.effects_summary()[CONF]["api_delete"] == 1
        [new] = world.lookup("pexip:worker_vm", "name", CONF)
        assert new != worker and good.get(CONF) not in (None, b'{"stale": true}')
    finally:
        await systems.aclose()
        await world.aclose()


class _CountingStore(BootstrapStore):
    """A store that counts the reads of a file (each one a read and a decryption)."""

    reads = 0

    def get(self, node: str, worker: str | None = None) -> bytes | None:
        self.reads += 1
        return super().get(node, worker)


async def test_a_synced_nodes_file_is_not_read_to_observe_it(tmp_path: Path) -> None:
    """Once the node is SYNCED neither bootstrap step needs its file: observing and verifying them reads none."""
    deployment = simulated_deployment(2, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    systems = open_systems(deployment, world)
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            report = await api.drive(
                deployment, journal, world=world, hooks=world, auto_approve=True, clock=FakeClock()
            )
        assert report.exit_code == 0
        assert systems.bootstrap is not None
        store = _CountingStore(systems.bootstrap.directory, deployment.pexip_api.bootstrap_key, deployment.name)
        assert store.sha256(CONF) is not None and store.reads == 1  # the file is there, and readable
        systems.bootstrap = store
        for step in ("deployment_file", "provision_node"):
            outcome = await execute(STEPS[step], StepContext(deployment, deployment.node(CONF), systems))
            assert outcome is not None and outcome.changes == (), step
        assert store.reads == 1
    finally:
        await systems.aclose()
        await world.aclose()


async def test_the_upload_sends_the_file_its_observation_read(tmp_path: Path) -> None:
    """provision_node decrypts the node's file once: its observation's read is what the upload sends, and the
    verify after it finds the node SYNCED (no read)."""
    deployment = simulated_deployment(2, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite", faults=f"permanent=provision_node@{CONF}")
    systems = open_systems(deployment, world)
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            report = await api.drive(
                deployment, journal, world=world, hooks=world, auto_approve=True, clock=FakeClock()
            )
            assert report.exit_code == 1 and journal.node(CONF).step == "provision_node"
        assert systems.bootstrap is not None
        store = _CountingStore(systems.bootstrap.directory, deployment.pexip_api.bootstrap_key, deployment.name)
        sha = store.sha256(CONF)
        assert sha is not None and store.reads == 1
        systems.bootstrap = store
        outcome = await execute(STEPS["provision_node"], StepContext(deployment, deployment.node(CONF), systems))
        assert outcome is not None and [c.field for c in outcome.changes] == ["bootstrap_file"]
        assert store.reads == 2 and world.effects_summary()[CONF]["bootstrap_upload"] == 1
        assert world.get("provisioning:node", CONF)["sha256"] == sha
    finally:
        await systems.aclose()
        await world.aclose()


async def test_the_worker_vm_password_is_masked_in_any_text(tmp_path: Path) -> None:
    """The random password posted with a Conferencing Node's worker_vm is masked by the redactor (by its shape)."""
    from config.secrets import REDACTED, REDACTOR

    deployment, world, systems = await _manager_hardened(tmp_path)
    posted: list[dict[str, Any]] = []
    create = systems.pexip.create

    async def recording_create(resource: str, fields: dict[str, Any]) -> Any:
        posted.append(fields)
        return await create(resource, fields)

    # A spy on the twin, not a mock: the password is kept nowhere to be read back (the twin stores a digest).
    systems.pexip.create = recording_create  # type: ignore[method-assign]
    try:
        outcome = await execute(STEPS["deployment_file"], StepContext(deployment, deployment.node(CONF), systems))
        assert outcome is not None and len(outcome.changes) == 1
    finally:
        await systems.aclose()
        await world.aclose()
    [fields] = [f for f in posted if f.get("name") == CONF]
    password = fields["password"]
    assert len(password) >= 32
    assert REDACTOR.scrub_text(f"error: login {password} refused") == f"error: login {REDACTED} refused"


@pytest.mark.slow
@pytest.mark.parametrize("step", ["deployment_file", "provision_node"])
def test_killed_after_the_bootstrap_step_then_finished_once(
    tmp_path: Path, step: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    """The process dies right after the step's side effects, before the journal knew; the rerun neither posts
    the worker_vm again nor uploads twice."""
    from tests.orchestrator.crash_helpers import assert_finished_once, simulate_proc

    # One node moves at a time while it dies: an exit during another node's lock_bios (its password half typed)
    # would fail that node on the rerun by design, for the operator to check its console (flaky under load).
    first = simulate_proc(procs, tmp_path, "--faults", f"exit={step}@{CONF}", "--concurrency", "1")
    first.communicate(timeout=120)
    assert first.returncode == 70
    second = simulate_proc(procs, tmp_path, "--faults", f"exit={step}@{CONF}")
    _out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()
    assert_finished_once(tmp_path)
    effects = json.loads((tmp_path / "effects.json").read_text())[CONF]
    assert effects["bootstrap_upload"] == 1 and "api_delete" not in effects
