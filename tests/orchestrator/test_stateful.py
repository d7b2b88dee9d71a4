"""Random sequences of runs, kills, approvals, maintenance and resumes keep every promise of the record (issue #7).

A hypothesis state machine drives a 2-node deployment in process against the simulated world
with transient faults. A kill cancels the run at a chosen side effect (a step's ``before_step``
or ``after_apply``, the worst moment: applied, not committed), like a process that dies there.
After every rule: each non-repeatable effect happened at most once, the journal's chain verifies,
and every node row equals the place derived from its events.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from adapters.sim.world import SimWorld
from config.errors import ConfigError
from config.load import simulated_deployment
from journal import Journal
from orchestrator import api
from orchestrator._history import PLACE_COLUMNS
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems
from tests.orchestrator.conftest import NON_REPEATABLE

NODES = ("pexip-mgr", "pexip-conf-00001")


class KillingHooks:
    """The world's fault hooks, cancelling ``task`` at the ``at``-th hook call (a kill at that instant)."""

    def __init__(self, world: SimWorld, at: int | None) -> None:
        self.world, self.at, self.calls = world, at, 0
        self.task: asyncio.Task[Any] | None = None

    def _tick(self) -> None:
        self.calls += 1
        if self.at is not None and self.calls == self.at and self.task is not None:
            self.task.cancel()

    def before_step(self, node: str, step: str) -> None:
        self.world.before_step(node, step)
        self._tick()

    def after_apply(self, node: str, step: str) -> None:
        self.world.after_apply(node, step)
        self._tick()


class DeploymentMachine(RuleBasedStateMachine):
    """One deployment's life: runs (some killed), approvals, maintenance, resumes of failed nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="stateful-"))
        self.loop = asyncio.new_event_loop()
        self.deployment = simulated_deployment(len(NODES), self.tmp / "world.d")
        self.journal_path = self.tmp / "journal.sqlite"
        self.world_path = self.tmp / "world.sqlite"
        self.seed = 0
        with api.open_journal(self.journal_path) as journal:
            journal.ensure_nodes((n.name, n.role, "new") for n in self.deployment.nodes)

    def teardown(self) -> None:
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def _run(self, kill_at: int | None, resume: bool, approve: bool) -> None:
        self.seed += 1
        # A new process each time: the world and the journal are opened afresh.
        world = SimWorld.open(self.world_path, faults=f"transient=0.03,seed={self.seed}")
        systems = open_systems(self.deployment, world)
        hooks = KillingHooks(world, kill_at)
        try:
            with api.open_journal(self.journal_path) as journal:
                engine = Engine(self.deployment, journal, systems, clock=FakeClock(), hooks=hooks, auto_approve=approve)
                engine.load()
                failed = [r.name for r in journal.nodes() if r.state == "failed"] if resume else []
                hooks.task = asyncio.ensure_future(engine.run(retry=failed))
                try:
                    await hooks.task
                except asyncio.CancelledError:
                    pass  # killed: the step in flight stays journaled as started
        finally:
            await systems.aclose()
            world.close()  # what the dead process had applied stays applied

    @rule(
        kill_at=st.one_of(st.none(), st.integers(min_value=1, max_value=40)),
        resume=st.booleans(),
        approve=st.booleans(),
    )
    def run(self, kill_at: int | None, resume: bool, approve: bool) -> None:
        """`run` / `resume --all` (retrying failed nodes), maybe killed at the kill_at-th hook call."""
        self.loop.run_until_complete(self._run(kill_at, resume, approve))

    @rule()
    def approve(self) -> None:
        """An operator approves the security wizard (refused once the Manager is past it)."""
        with api.open_journal(self.journal_path) as journal:
            try:
                api.approve(journal, NODES[0], "security_wizard", by="alice", deployment=self.deployment)
            except ConfigError as exc:
                assert "past the security_wizard gate" in str(exc)

    @rule(node=st.sampled_from(NODES), on=st.booleans())
    def maintenance(self, node: str, on: bool) -> None:
        """An operator turns maintenance on or off for a node."""
        with api.open_journal(self.journal_path) as journal:
            api.set_maintenance(journal, node, on, by="bob", reason="stateful test")

    @invariant()
    def non_repeatable_effects_happen_at_most_once(self) -> None:
        """The world saw each OVA import, CSR, wizard and role creation at most once per node."""
        world = SimWorld.open(self.world_path)
        try:
            summary = world.effects_summary()
        finally:
            world.close()
        for node, effects in summary.items():
            for kind in NON_REPEATABLE:
                assert effects.get(kind, 0) <= 1, (node, kind, effects)

    @invariant()
    def the_journal_verifies_and_rows_are_derived(self) -> None:
        """The chain and rows verify, and every node row equals the place its events derive."""
        with Journal.open(self.journal_path, readonly=True) as journal:
            report = journal.verify(chain_only=True)
            assert report.ok, report
            derived = journal.derived_nodes()
            for row in journal.nodes():
                fields = derived[row.name]
                for column in PLACE_COLUMNS:
                    have, want = getattr(row, column), getattr(fields, column)
                    assert (have or 0) == (want or 0) if column in ("attempt", "maintenance") else have == want, (
                        row.name,
                        column,
                        have,
                        want,
                    )


_FAST = settings(
    max_examples=6, stateful_step_count=5, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
TestDeploymentMachine = DeploymentMachine.TestCase
TestDeploymentMachine.settings = _FAST


@pytest.mark.slow
class TestDeploymentMachineLong(DeploymentMachine.TestCase):  # type: ignore[misc, valid-type]
    """The same machine, longer sequences and more of them."""

    settings = settings(
        max_examples=40,
        stateful_step_count=12,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
