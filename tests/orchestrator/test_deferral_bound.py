"""Deferral has a time bound (issue #11): a stretch of steps that change nothing shows in the journal as it runs.

A step that finds the world right has no barrier of its own: its ``step_committed`` and the next step's start wait
for the next side effect's barrier. On slow systems (seconds per step) another process (``orchestrator status``)
would then see none of such a stretch until it ends; the engine writes what was deferred at the latest
``DEFER_MAX_S`` after the first of it, with no step waiting for that write.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from adapters.sim.world import SimWorld
from config.errors import JournalError
from config.load import simulated_deployment
from journal import Transition, kinds
from machines.lifecycle import STEPS
from orchestrator import _journaled, api
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems
from tests.orchestrator.conftest import run_on

# Rewound to the last milestone's first step of a node at its end, the run is a stretch of steps that change nothing.
_STRETCH = STEPS["management"]["ldap_authenticated"]


class _Reader:
    """The world's hooks, and before each step what a second connection sees: the steps committed since ``after``."""

    def __init__(self, world: SimWorld, journal: Path, after: int) -> None:
        self.world, self.journal, self.after = world, journal, after
        self.seen: dict[str, list[str]] = {}  # step about to run -> the steps another process sees committed
        self.applied: list[str] = []

    def before_step(self, node: str, step: str) -> None:
        with closing(sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT step FROM events WHERE seq > ? AND kind = ? ORDER BY seq", (self.after, kinds.STEP_COMMITTED)
            ).fetchall()
        self.seen[step] = [step for (step,) in rows]
        self.world.before_step(node, step)

    def after_apply(self, node: str, step: str) -> None:
        self.applied.append(step)
        self.world.after_apply(node, step)


async def test_a_reader_sees_a_no_change_stretch_committed_within_the_bound_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step's commit is seen by a second connection while the next no-change step is still running."""
    deployment = simulated_deployment(1, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    path = tmp_path / "journal.sqlite"
    try:
        with api.open_journal(path) as journal:
            assert (await run_on(deployment, journal, world)).exit_code == 0  # the node at its end, at latency 0
            after = journal.statistics()["last_seq"]
            # Slow systems: each observation takes 0.1 x latency x uniform(0.5, 1.5) >= 20 ms, each step several
            # of them, more than the bound. The bound's timer is due before the observation's sleep ends (both are
            # the loop's timers; its deadline is the earlier): not a race with the machine's load.
            world.latency = 0.4
            monkeypatch.setattr(_journaled, "DEFER_MAX_S", 0.01)
            reader = _Reader(world, path, after)
            systems = open_systems(deployment, world)
            try:
                engine = Engine(deployment, journal, systems, clock=FakeClock(), hooks=reader, auto_approve=True)
                report = await engine.run(retry=["pexip-mgr"], from_step=_STRETCH[0])
            finally:
                await systems.aclose()
            assert report.exit_code == 0
    finally:
        await world.aclose()
    assert reader.applied == []  # no side effect: no barrier wrote anything during the stretch
    assert list(reader.seen) == list(_STRETCH)
    # Before each step from the third on, the stretch's steps up to the one before the previous are on disk: the
    # previous one's commit (deferred as it ended, with this step's start) may still wait for the bound.
    for i, step in enumerate(_STRETCH[2:], start=2):
        assert reader.seen[step][: i - 1] == list(_STRETCH[: i - 1]), (step, reader.seen)


async def test_a_failed_timed_flush_loses_what_it_held_and_the_run_writes_nothing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound's flush fails: the run fails (JournalError), none of it is journaled, a resume ends the stretch."""
    deployment = simulated_deployment(1, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    path = tmp_path / "journal.sqlite"
    try:
        with api.open_journal(path) as journal:
            assert (await run_on(deployment, journal, world)).exit_code == 0
            world.latency = 0.4
            monkeypatch.setattr(_journaled, "DEFER_MAX_S", 0.01)
            reader = _Reader(world, path, journal.statistics()["last_seq"])
            commit_seqs = journal.commit_seqs
            failed: list[list[tuple[str, str | None]]] = []

            def failing(transitions: list[Transition]) -> list[int]:
                # The first write that holds a commit of the stretch (the bound's flush: nothing else writes then).
                if not failed and any(t.kind == kinds.STEP_COMMITTED for t in transitions):
                    failed.append([(t.kind, t.step) for t in transitions])
                    raise JournalError("injected: the disk is full")
                return commit_seqs(transitions)

            monkeypatch.setattr(journal, "commit_seqs", failing)
            systems = open_systems(deployment, world)
            try:
                engine = Engine(deployment, journal, systems, clock=FakeClock(), hooks=reader, auto_approve=True)
                with pytest.raises(JournalError, match="injected: the disk is full"):
                    await engine.run(retry=["pexip-mgr"], from_step=_STRETCH[0])
            finally:
                await systems.aclose()
            monkeypatch.setattr(journal, "commit_seqs", commit_seqs)
            assert failed and failed[0][0] == (kinds.STEP_COMMITTED, _STRETCH[0])
            # Nothing after the failed flush's transitions was journaled: the run stopped at the next step's end.
            after = [(e.kind, e.step) for e in journal.events() if e.seq > reader.after]
            assert (kinds.STEP_COMMITTED, _STRETCH[0]) not in after and len(reader.seen) < len(_STRETCH)
            assert all(kind != kinds.STEP_COMMITTED for kind, _ in after), after
            journal.release_leases(engine.owner)
            world.latency = 0.0
            assert (await run_on(deployment, journal, world)).exit_code == 0  # observes the stretch again, ends it
            assert journal.node("pexip-mgr").state == "ldap_authenticated"  # type: ignore[union-attr]
    finally:
        await world.aclose()
    assert reader.applied == []


async def test_a_due_flush_leaves_its_transitions_to_a_pending_group_commit_behind_what_it_holds(
    tmp_path: Path,
) -> None:
    """Due while a group commit waits in its window: the deferred transitions are written by that flush, after
    the transitions it holds (journaled earlier), never ahead of them."""
    deployment = simulated_deployment(1, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            systems = open_systems(deployment, world)
            try:
                engine = Engine(deployment, journal, systems, clock=FakeClock())
                engine.load()
                engine._committer.window_s, engine._committer.writers = 0.05, lambda: 2  # the window of many nodes
                node = deployment.management.name

                def retry(key: str) -> Transition:
                    return Transition(node=node, kind=kinds.STEP_RETRY, step="deploy_ova", key=key, actor="test")

                pending = asyncio.ensure_future(engine._committer.commit_all([retry("first")]))
                await asyncio.sleep(0)  # queued: its flush comes at the window's end
                await engine._defer(retry("second"))
                engine._deferred_at -= _journaled.DEFER_MAX_S  # deferred a whole bound ago
                engine._defer_due()
                assert [t.key for t in engine._deferred] == ["second"]  # left to the pending flush
                await pending
                assert engine._deferred == []
            finally:
                await systems.aclose()
            keys = [e.key for e in journal.events(node=node) if e.kind == kinds.STEP_RETRY]
            assert keys == ["first", "second"]
    finally:
        await world.aclose()


async def test_a_timed_flush_that_failed_with_no_step_left_to_tell_fails_the_run_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound's flush failed after the last deferral, no step left to tell: the run's end raises, nothing written."""
    deployment = simulated_deployment(1, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            systems = open_systems(deployment, world)
            try:
                engine = Engine(deployment, journal, systems, clock=FakeClock())
                engine.load()
                node = deployment.management.name
                await engine._defer(Transition(node=node, kind=kinds.STEP_RETRY, step="deploy_ova", actor="test"))
                engine._deferred_at -= _journaled.DEFER_MAX_S

                def failing(transitions: list[Transition]) -> list[int]:
                    raise JournalError("injected: the disk is full")

                monkeypatch.setattr(journal, "commit_seqs", failing)
                engine._defer_due()  # fails with no caller to tell
                monkeypatch.undo()
                with pytest.raises(JournalError, match="injected: the disk is full"):
                    engine._settle()
                engine._settle()  # said once: the run's `finally` goes on to release the leases
            finally:
                await systems.aclose()
            assert [e for e in journal.events(node=node) if e.kind == kinds.STEP_RETRY] == []
    finally:
        await world.aclose()
