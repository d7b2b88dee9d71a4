"""Random sequences of runs, kills, approvals, maintenance and resumes keep every promise of the record (issue #7).

A hypothesis state machine drives a 2-node deployment in process against the simulated world
with transient faults. A kill happens at a chosen side effect (a step's ``before_step`` or
``after_apply``, the worst moment: applied, not committed): the hook raises :class:`Killed`, so
not one more line of that node runs, and the whole run is cancelled, like a process that dies
there (the in-process form of the world's ``exit`` fault, which calls ``os._exit``). A run that
is not killed ends with a signed checkpoint, as ``run`` does; a killed one leaves its tail unsigned.

After every rule: each non-repeatable effect happened at most once, the journal verifies in full
against the trusted public key (chain, signatures, rows, continuity, integrity_check) and
incrementally from its last checkpoint, and every node row equals the place derived from its
events. At the end of every sequence, with the faults gone and maintenance off, ``resume --all``
finishes every node with each non-repeatable effect exactly once.
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

from adapters.sim.world import VM, SimWorld
from config.errors import ConfigError
from config.load import simulated_deployment
from journal import Journal, Signer, VerifyStatus
from orchestrator import api
from orchestrator._history import PLACE_COLUMNS
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems
from tests.orchestrator.conftest import NON_REPEATABLE

NODES = ("pexip-mgr", "pexip-conf-00001")
OPERATOR = "interrupted while its password was being typed; open its console"
SIGNER = Signer.generate()
PUBLIC = SIGNER.public_key_pem()


class Killed(BaseException):
    """The process died here: not an error any handler of the engine catches."""


class KillingHooks:
    """The world's fault hooks, killing the run at the ``at``-th hook call."""

    def __init__(self, world: SimWorld, at: int | None) -> None:
        self.world, self.at, self.calls = world, at, 0
        self.task: asyncio.Task[Any] | None = None
        self.killed = False

    def _tick(self) -> None:
        self.calls += 1
        if self.at is not None and self.calls == self.at and self.task is not None:
            self.killed = True
            self.task.cancel()  # every other node stops at its next await
            raise Killed  # and this one at once

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
            journal.checkpoint(SIGNER)

    def teardown(self) -> None:
        try:
            self._finish()
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    async def _run(self, kill_at: int | None, resume: bool, approve: bool, faults: str | None = None) -> bool:
        """One process: open the world and the journal afresh, verify, drive; True when it was killed."""
        self.seed += 1
        world = SimWorld.open(self.world_path, faults=f"transient=0.03,seed={self.seed}" if faults is None else faults)
        systems = open_systems(self.deployment, world)
        hooks = KillingHooks(world, kill_at)
        try:
            with api.open_journal(self.journal_path) as journal:
                # What every command does before acting: the journal from its last checkpoint.
                assert journal.verify(public_key=PUBLIC, incremental=True).ok
                engine = Engine(self.deployment, journal, systems, clock=FakeClock(), hooks=hooks, auto_approve=approve)
                engine.load()
                failed = [r.name for r in journal.nodes() if r.state == "failed"] if resume else []
                hooks.task = asyncio.ensure_future(engine.run(retry=failed))
                try:
                    await hooks.task
                except asyncio.CancelledError:
                    assert hooks.killed
                for _ in range(3):  # let commits already handed to the journal land (a kill a moment later)
                    await asyncio.sleep(0)
                if not hooks.killed:
                    journal.checkpoint(SIGNER)  # the end of every run; a killed process signs nothing
        finally:
            await systems.aclose()
            world.close()  # what the dead process had applied stays applied
        return hooks.killed

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

    def _effects(self) -> dict[str, dict[str, int]]:
        world = SimWorld.open(self.world_path)
        try:
            return world.effects_summary()
        finally:
            world.close()

    @invariant()
    def non_repeatable_effects_happen_at_most_once(self) -> None:
        """The world saw each OVA import, CSR, wizard and role creation at most once per node."""
        for node, effects in self._effects().items():
            for kind in NON_REPEATABLE:
                assert effects.get(kind, 0) <= 1, (node, kind, effects)

    @invariant()
    def the_journal_verifies_and_rows_are_derived(self) -> None:
        """Full and incremental verify pass with the trusted key, and every node row equals its derived place."""
        with Journal.open(self.journal_path, readonly=True) as journal:
            full = journal.verify(public_key=PUBLIC)
            assert full.ok and full.status == VerifyStatus.VERIFIED, full.problems
            assert journal.verify(public_key=PUBLIC, incremental=True).ok
            derived = journal.derived_nodes()
            assert {row.name for row in journal.nodes()} == set(derived) == set(NODES)
            for row in journal.nodes():
                fields = derived[row.name]
                for column in PLACE_COLUMNS:
                    have, want = getattr(row, column), getattr(fields, column)
                    if column in ("attempt", "maintenance"):
                        have, want = have or 0, want or 0
                    assert have == want, (row.name, column, have, want)

    async def _operator_at_the_console(self) -> list[str]:
        """The one window that needs a person (README): a kill while a BIOS password was being typed (another
        node's kill cancels this one at its next await, between the "typing" marker and the last key). The
        operator does what the error says: the BIOS asks for no password (the keys never all arrived), so the
        VM is powered off and the run goes again. Returns the nodes so handled; any other failure is left."""
        with Journal.open(self.journal_path, readonly=True) as journal:
            failed = [r.name for r in journal.nodes() if r.state == "failed" and OPERATOR in (r.last_error or "")]
        world = SimWorld.open(self.world_path)
        try:
            for name in failed:
                vm = world.get(VM, name)
                assert vm["bios"].get("lock") == "typing" and not vm["bios"]["locked_marker"], (name, vm["bios"])
                await world.apply([(VM, name, {**vm, "power_state": "poweredOff"})])
        finally:
            world.close()
        return failed

    def _finish(self) -> None:
        """Faults gone, maintenance off, the wizard approved: `resume --all` finishes, every effect exactly once."""
        with api.open_journal(self.journal_path) as journal:
            for row in journal.nodes():
                if row.maintenance:
                    api.set_maintenance(journal, row.name, False, by="bob", reason="done")
        assert not self.loop.run_until_complete(self._run(None, resume=True, approve=True, faults=""))
        if self.loop.run_until_complete(self._operator_at_the_console()):
            assert not self.loop.run_until_complete(self._run(None, resume=True, approve=True, faults=""))
        with Journal.open(self.journal_path, readonly=True) as journal:
            states = {row.name: row.state for row in journal.nodes()}
        assert set(states.values()) == {"ldap_authenticated"}, states
        effects = self._effects()
        for node in NODES:
            assert effects[node]["vm_import"] == 1 and effects[node]["csr_create"] == 1, (node, effects[node])
        for kind in ("installation_wizard", "security_wizard", "role_create"):
            assert effects[NODES[0]][kind] == 1, (kind, effects[NODES[0]])


_FAST = settings(
    max_examples=8, stateful_step_count=6, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
TestDeploymentMachine = DeploymentMachine.TestCase
TestDeploymentMachine.settings = _FAST


@pytest.mark.slow
class TestDeploymentMachineLong(DeploymentMachine.TestCase):  # type: ignore[misc, valid-type]
    """The same machine, longer sequences and more of them."""

    settings = settings(
        max_examples=60,
        stateful_step_count=14,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
