"""One durable transaction per step (issue #11): a step's commit also starts what comes next.

The ``step_committed`` of one step and the ``step_started`` of the next (at a milestone's end:
``milestone_started`` too) go to the journal together; the start is still durable before any side
effect of the step it starts. A crash right there (the transaction written, the step not yet run)
is resumed by running that step once, observing first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.ca import SimCA
from adapters.sim.world import SimWorld
from config.load import simulated_deployment
from journal import Journal, Transition, kinds
from machines.lifecycle import GATE_OF_STEP
from orchestrator import api
from orchestrator import steps as step_impls
from orchestrator._commit import GroupCommitter, Slots
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems
from tests.orchestrator.conftest import run_on


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
    """Every transaction the engine commits, as (node, kind, step) lists (its group committer writes with
    ``commit_seqs``, the end of a run with ``commit`` or ``commit_seqs``: both are recorded)."""
    batches: list[list[tuple[str | None, str, str | None]]] = []

    def recording(commit: Any) -> Any:
        def recorded(transitions: Any) -> Any:
            batches.append([(t.node, t.kind, t.step) for t in transitions])
            return commit(transitions)

        return recorded

    journal.commit = recording(journal.commit)  # type: ignore[method-assign]
    journal.commit_seqs = recording(journal.commit_seqs)  # type: ignore[method-assign]
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

            report = await run_on(deployment, journal, world)
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
            assert (await run_on(deployment, journal, world)).exit_code == 0
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


def _windowed(writers: int) -> tuple[GroupCommitter, list[list[int]]]:
    """A committer with an hour's window among ``writers`` writers, and the transactions it writes."""
    writes: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        writes.append(items)
        return items

    return GroupCommitter(write, window_s=3600.0, writers=lambda: writers), writes


async def test_the_commit_window_ends_once_every_writer_not_parked_waits() -> None:
    """A commit does not sit out the window while the only other writer waits on a slot (issue #11: the
    Management Node's steps waited 10 ms each while every Conferencing Node waited for it): without the
    early end this waits the whole hour and wait_for fails."""
    committer, writes = _windowed(writers=2)
    slot = Slots(1, committer)
    await slot.acquire()
    parked = asyncio.create_task(slot.acquire())  # the second writer waits for a slot: it cannot join soon
    await asyncio.sleep(0)
    assert await asyncio.wait_for(committer.commit(1), timeout=5) == 1
    assert writes == [[1]]
    slot.release()
    await parked


async def test_the_commit_window_waits_for_a_writer_that_is_running() -> None:
    """While another writer runs, the window stays open and its commit lands in the same transaction."""
    committer, writes = _windowed(writers=2)

    async def running() -> int:
        for _ in range(5):
            await asyncio.sleep(0)  # busy elsewhere for a few loop iterations, then commits
        return await committer.commit(2)

    other = asyncio.create_task(running())
    assert await asyncio.wait_for(committer.commit(1), timeout=5) == 1
    assert await other == 2
    assert writes == [[1, 2]]


async def test_the_commit_window_waits_for_a_writer_a_slot_just_woke() -> None:
    """A writer woken by a slot's release, not resumed yet when the commit comes, is waited for: its commit
    lands in the same transaction (a flush at once would leave it a transaction of its own)."""
    committer, writes = _windowed(writers=2)
    slot = Slots(1, committer)
    await slot.acquire()

    async def woken() -> int:
        await slot.acquire()  # parked until the first writer releases the slot
        await asyncio.sleep(0)
        return await committer.commit(2)

    other = asyncio.create_task(woken())
    await asyncio.sleep(0)
    slot.release()
    async with asyncio.timeout(5):  # in this task (wait_for's own task would let the woken writer resume first)
        assert await committer.commit(1) == 1  # the woken writer has not resumed when this one commits
        assert await other == 2
    assert writes == [[1, 2]]


async def test_a_failed_transaction_fails_every_group_in_it() -> None:
    def write(items: list[Transition]) -> list[Any]:
        raise OSError("disk full")

    committer = GroupCommitter(write)
    outcomes = await asyncio.gather(committer.commit_all([1, 2]), committer.commit(3), return_exceptions=True)
    assert all(isinstance(o, OSError) for o in outcomes)


def _committed_rows(path: Path, node: str) -> list[tuple[str, str | None]]:
    """The node's events as another connection reads the journal: only what is committed (WAL)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT kind, step FROM events WHERE node = ? ORDER BY seq", (node,)).fetchall()


def _started_on_disk(path: Path, node: str, step: str) -> list[tuple[str, str | None]]:
    """Assert that the node's last committed start is ``step``'s, not committed since; the rows from it on."""
    rows = _committed_rows(path, node)
    starts = [i for i, (kind, _) in enumerate(rows) if kind == kinds.STEP_STARTED]
    assert starts and rows[starts[-1]][1] == step, (node, step, rows[-4:])
    assert (kinds.STEP_COMMITTED, step) not in rows[starts[-1] :], (node, step, rows[-4:])
    return rows[starts[-1] :]


async def test_no_side_effect_before_its_start_is_on_disk_while_several_nodes_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each apply, and each CSR handed to the CA, finds its step's start (and the gate it passes) committed, as
    another connection reads the journal, while four nodes share transactions and steps retry (issue #11)."""
    path = tmp_path / "journal.sqlite"
    checked: list[str] = []
    for step in step_impls.STEPS.values():

        def guarded(original: Any, name: str) -> Any:
            async def apply(ctx: Any, observed: Any, changes: Any) -> Any:
                since = _started_on_disk(path, ctx.node.name, name)
                if name in GATE_OF_STEP and ctx.gate_payload is not None:  # opened now or by an earlier attempt
                    assert (kinds.GATE_OPENED, name) in _committed_rows(path, ctx.node.name), (ctx.node.name, since)
                checked.append(name)
                return await original(ctx, observed, changes)

            return apply

        monkeypatch.setattr(step, "apply", guarded(step.apply, step.name))
    submit = SimCA.submit

    async def submitted(self: SimCA, node: str, csr_pem: str) -> None:
        _started_on_disk(path, node, "install_certificate")
        checked.append("ca.submit")
        await submit(self, node, csr_pem)

    monkeypatch.setattr(SimCA, "submit", submitted)
    deployment = simulated_deployment(4, tmp_path / "world.d")
    # Retries as many as the faults may take: which call draws which fault depends on how the four nodes
    # interleave, and under load a 15-call step (install_certificate) once drew five in a row (mem5).
    policy = deployment.policy
    deployment = dataclasses.replace(
        deployment, policy=dataclasses.replace(policy, retry=dataclasses.replace(policy.retry, max_attempts=50))
    )
    world = SimWorld.open(tmp_path / "world.sqlite", faults="transient=0.03,seed=7")
    try:
        with api.open_journal(path) as journal:
            assert (await run_on(deployment, journal, world)).exit_code == 0
            retried = [e for e in journal.events() if e.kind == kinds.STEP_RETRY]
    finally:
        await world.aclose()
    assert retried, "the faults made no step retry: the case of a start journaled alone is not covered"
    assert {"deploy_ova", "security_wizard", "install_certificate", "ca.submit"} <= set(checked)
