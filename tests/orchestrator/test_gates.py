"""The gates (orchestrator/_gates.py) and the engine's one source of a node's state."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from adapters.base import Systems
from adapters.ca_manual import ManualCA
from adapters.sim.world import SimWorld
from config.load import simulated_deployment
from config.model import Deployment
from journal import Journal, kinds
from machines.lifecycle import APPROVAL_GATES, GATES
from orchestrator import api
from orchestrator._gates import Gates
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return simulated_deployment(2, tmp_path / "world.d")


async def _no_commit(transition: Any) -> None:
    raise AssertionError(f"nothing is to be committed here (got {transition.kind})")


async def _no_barrier() -> None:
    """Nothing is deferred here: the barrier has nothing to write."""


def _gates(deployment: Deployment, journal: Journal, systems: Systems) -> Gates:
    return Gates(deployment, journal, systems, _no_commit, FakeClock(), barrier=_no_barrier, actor="test")


async def test_the_ca_adapters_say_whether_they_answer_by_themselves(deployment: Deployment, tmp_path: Path) -> None:
    """The simulated CA signs by itself; the manual CA waits for a person."""
    world = SimWorld.open(tmp_path / "world.sqlite")
    systems = open_systems(deployment, world)
    try:
        assert systems.ca.answers_by_itself is True
        assert ManualCA(deployment, tmp_path).answers_by_itself is False
    finally:
        await systems.aclose()
        await world.aclose()


@pytest.mark.parametrize(
    "gate,sim_ca,polled",
    [
        ("certificate", True, True),  # the simulated CA answers by itself: worth polling
        ("certificate", False, False),  # a manual CA: asked once, the run exits 3
        ("security_wizard", True, False),  # a person approves: never polled
        ("bios_password", True, False),  # a person at the console: never polled
    ],
)
async def test_only_a_gate_the_ca_opens_by_itself_is_polled(
    deployment: Deployment, tmp_path: Path, gate: str, sim_ca: bool, polled: bool
) -> None:
    """Polling is decided by the gate's opens_by and the CA adapter, not by the configuration's pki.mode."""
    world = SimWorld.open(tmp_path / "world.sqlite")
    systems = open_systems(deployment, world)
    try:
        if not sim_ca:
            systems = dataclasses.replace(systems, ca=ManualCA(deployment, tmp_path))
        with Journal.open(":memory:") as journal:
            assert _gates(deployment, journal, systems).opens_by_itself(gate) is polled
    finally:
        await systems.aclose()
        await world.aclose()


def test_approval_gates_are_the_gates_an_operator_opens() -> None:
    """`orchestrator approve` opens exactly the gates declared opens_by operator."""
    assert APPROVAL_GATES == {g for g, spec in GATES.items() if spec["opens_by"] == "operator"}
    assert "certificate" not in APPROVAL_GATES


async def test_load_keeps_only_the_gates_not_yet_consumed(deployment: Deployment, tmp_path: Path) -> None:
    """A journaled certificate is kept for a node still certifying, not for one already certified; consume forgets
    it."""
    mgr, conf = deployment.management.name, deployment.nodes[1].name
    world = SimWorld.open(tmp_path / "world.sqlite")
    systems = open_systems(deployment, world)
    try:
        with Journal.open(":memory:") as journal:
            journal.ensure_nodes((n.name, n.role, "new") for n in deployment.nodes)
            for node in (mgr, conf):
                journal.record(
                    node=node,
                    kind=kinds.GATE_OPENED,
                    step="install_certificate",
                    actor="ca",
                    payload={"gate": "certificate", "certificate": f"PEM of {node}"},
                )
            gates = _gates(deployment, journal, systems)
            gates.load({mgr: "awaiting_certificate", conf: "certified"})
            assert gates.payload(mgr, "install_certificate") == {"gate": "certificate", "certificate": f"PEM of {mgr}"}
            assert gates.payload(conf, "install_certificate") is None
            assert gates.payload(mgr, "create_csr") is None  # a step without a gate
            gates.consume(mgr, "install_certificate")
            assert gates.payload(mgr, "install_certificate") is None
    finally:
        await systems.aclose()
        await world.aclose()


async def test_the_model_and_the_journal_row_never_drift(tmp_path: Path) -> None:
    """After every commit the engine's node model holds exactly the node's journal row (state, step, attempt, gate,
    error)."""
    deployment = simulated_deployment(3, tmp_path / "world.d")
    checked: list[str] = []

    async def run(journal: Journal, world: SimWorld, *, approve: bool) -> Any:
        systems = open_systems(deployment, world)

        def observer(node: str, state: str, step: str | None, kind: str) -> None:
            m, row = engine._models[node], journal.node(node)
            assert row is not None
            assert (m.state, m.step, m.attempt, m.gate, m.reason, m.failed_from) == (
                row.state,
                row.step,
                row.attempt or 0,
                row.gate,
                row.last_error,
                row.failed_from,
            ), f"{node} after {kind}"
            checked.append(kind)

        engine = Engine(
            deployment, journal, systems, clock=FakeClock(), observer=observer, hooks=world, auto_approve=approve
        )
        try:
            return await engine.run()
        finally:
            await systems.aclose()

    # Transient faults for retries (last_error set), no approval first (a node waits on a gate).
    world = SimWorld.open(tmp_path / "world.sqlite", faults="transient=0.02,seed=5")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            first = await run(journal, world, approve=False)
            api.approve(journal, deployment.management.name, "security_wizard", by="alice")
            second = await run(journal, world, approve=True)
    finally:
        await world.aclose()
    assert (first.exit_code, second.exit_code) == (3, 0)
    assert {kinds.GATE_WAITING, kinds.GATE_PASSED, kinds.STEP_RETRY, kinds.STEP_COMMITTED} <= set(checked)


@pytest.mark.parametrize(
    "node,state,gate,why",
    [
        ("pexip-conf-00001", "new", "security_wizard", "has no security_wizard step"),  # a role without the step
        ("pexip-mgr", "new", "bios_password", "bios.password_method"),  # the orchestrator types the password
        ("pexip-mgr", "certified", "security_wizard", "past the security_wizard gate"),  # the wizard ran long ago
        ("pexip-mgr", "ldap_authenticated", "security_wizard", "past the security_wizard gate"),  # done
    ],
)
def test_approve_refuses_a_gate_the_node_never_reaches(
    deployment: Deployment, node: str, state: str, gate: str, why: str
) -> None:
    """An approval that could never be used is refused (exit 2 in the CLI) and nothing is journaled."""
    from config.errors import ConfigError

    with Journal.open(":memory:") as journal:
        journal.ensure_nodes((n.name, n.role, state) for n in deployment.nodes)
        before = journal.statistics()["last_seq"]
        with pytest.raises(ConfigError, match=why):
            api.approve(journal, node, gate, by="alice", deployment=deployment)
        assert journal.statistics()["last_seq"] == before


def test_approve_says_when_the_gate_is_already_open(deployment: Deployment) -> None:
    """A second approval of an open, unused gate journals nothing and names the first approver."""
    with Journal.open(":memory:") as journal:
        journal.ensure_nodes((n.name, n.role, "installed") for n in deployment.nodes)
        first = api.approve(journal, "pexip-mgr", "security_wizard", by="alice", deployment=deployment)
        second = api.approve(journal, "pexip-mgr", "security_wizard", by="bob", deployment=deployment)
        opened = list(journal.events(kinds=[kinds.GATE_OPENED]))
    assert (first["already_open"], second["already_open"]) == (False, True)
    assert (second["by"], second["seq"]) == ("alice", first["seq"]) and len(opened) == 1
