"""One durable transaction per step (issue #11): a step's commit also starts what comes next.

The ``step_committed`` of one step and the ``step_started`` of the next (at a milestone's end:
``milestone_started`` too) go to the journal together; the start is still durable before any side
effect of the step it starts. A crash right there (the transaction written, the step not yet run)
is resumed by running that step once, observing first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.world import SimWorld
from config.load import simulated_deployment
from journal import Journal, Transition, kinds
from orchestrator import api
from orchestrator._commit import GroupCommitter
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems


class _Crash(BaseException):
    """The process dies (not an error a step could catch)."""


class _CrashBefore:
    """The world's fault hooks, and a crash once before ``node``'s ``step`` does anything."""

    def __init__(self, world: SimWorld, node: str, step: str) -> None:
        self.world, self.node, self.step, self.fired = world, node, step, False

    def before_step(self, node: str, step: str) -> None:
        if (node, step) == (self.node, self.step) and not self.fired:
            self.fired = True
            raise _Crash(f"killed before {node} {step}")
        self.world.before_step(node, step)

    def after_apply(self, node: str, step: str) -> None:
        self.world.after_apply(node, step)


def _recording(journal: Journal) -> list[list[tuple[str | None, str, str | None]]]:
    """Every transaction the engine commits, as (node, kind, step) lists."""
    batches: list[list[tuple[str | None, str, str | None]]] = []
    commit = journal.commit

    def recorded(transitions: Any) -> Any:
        batches.append([(t.node, t.kind, t.step) for t in transitions])
        return commit(transitions)

    journal.commit = recorded  # type: ignore[method-assign]
    return batches


@pytest.mark.parametrize(
    "before,together",
    [
        # within a milestone: the installation wizard's commit starts the login check
        (
            "verify_admin_login",
            [
                ("pexip-mgr", kinds.STEP_COMMITTED, "installation_wizard"),
                ("pexip-mgr", kinds.STEP_STARTED, "verify_admin_login"),
            ],
        ),
        # at a milestone's end: deployed reached, reserved started and its first step started
        (
            "reserve_resources",
            [
                ("pexip-mgr", kinds.STEP_COMMITTED, "deploy_ova"),
                ("pexip-mgr", kinds.MILESTONE_STARTED, "reserve_resources"),
                ("pexip-mgr", kinds.STEP_STARTED, "reserve_resources"),
            ],
        ),
    ],
)
async def test_a_crash_after_the_merged_commit_runs_the_started_step_once(
    tmp_path: Path, before: str, together: list[tuple[str, str, str]]
) -> None:
    deployment = simulated_deployment(1, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            batches = _recording(journal)
            systems = open_systems(deployment, world)
            hooks = _CrashBefore(world, "pexip-mgr", before)
            engine = Engine(deployment, journal, systems, clock=FakeClock(), hooks=hooks, auto_approve=True)
            try:
                with pytest.raises(_Crash):
                    await engine.run()
            finally:
                await systems.aclose()
            # The crash came after the one transaction that committed the step before and started this one.
            assert together in batches
            last = list(journal.events())[-1]
            assert (last.kind, last.step) == (kinds.STEP_STARTED, before)
            journal.release_leases(engine.owner)

            systems = open_systems(deployment, world)
            engine = Engine(deployment, journal, systems, clock=FakeClock(), hooks=world, auto_approve=True)
            try:
                report = await engine.run()
            finally:
                await systems.aclose()
            assert report.exit_code == 0
            assert journal.node("pexip-mgr").state == "ldap_authenticated"  # type: ignore[union-attr]
            started = [e for e in list(journal.events()) if e.kind == kinds.STEP_STARTED and e.step == before]
            committed = [e for e in list(journal.events()) if e.kind == kinds.STEP_COMMITTED and e.step == before]
            # Started twice (the crashed start, then attempt 2 on resume), committed once.
            assert [e.attempt for e in started] == [1, 2] and len(committed) == 1
            check = journal.verify(chain_only=True)
            assert check.ok, check.problems
        effects = world.effects_summary()["pexip-mgr"]
        assert effects["installation_wizard"] == 1 and effects["vm_import"] == 1
    finally:
        await world.aclose()


async def test_one_transaction_per_step_when_one_node_moves(tmp_path: Path) -> None:
    """With one node and nothing waiting, each committed step is one transaction (set-up apart)."""
    deployment = simulated_deployment(1, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            batches = _recording(journal)
            systems = open_systems(deployment, world)
            engine = Engine(deployment, journal, systems, clock=FakeClock(), hooks=world, auto_approve=True)
            try:
                assert (await engine.run()).exit_code == 0
            finally:
                await systems.aclose()
            steps = sum(kind == kinds.STEP_COMMITTED for batch in batches for _, kind, _ in batch)
            with_steps = [b for b in batches if any(k in (kinds.STEP_COMMITTED, kinds.STEP_STARTED) for _, k, _ in b)]
            # One per step, plus the first start and the two approval gates the run opens by itself.
            assert len(with_steps) <= steps + 1 + 2 * 2, [b for b in with_steps]
    finally:
        await world.aclose()


async def test_group_commit_never_splits_a_group() -> None:
    """Transitions committed together land in one transaction, even past the batch limit."""
    writes: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        writes.append(items)
        return [i * 10 for i in items]

    committer = GroupCommitter(write, max_batch=3)
    results = await asyncio.gather(
        committer.commit_all([1, 2]),
        committer.commit_all([3, 4]),
        committer.commit(5),
        committer.commit_all([6, 7, 8, 9]),
    )
    assert results == [[10, 20], [30, 40], 50, [60, 70, 80, 90]]
    assert writes == [[1, 2], [3, 4, 5], [6, 7, 8, 9]]  # a group bigger than the limit goes alone, whole


async def test_a_failed_transaction_fails_every_group_in_it() -> None:
    def write(items: list[Transition]) -> list[Any]:
        raise OSError("disk full")

    committer = GroupCommitter(write)
    outcomes = await asyncio.gather(committer.commit_all([1, 2]), committer.commit(3), return_exceptions=True)
    assert all(isinstance(o, OSError) for o in outcomes)
