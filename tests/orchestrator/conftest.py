"""Fixtures for engine tests: a simulated deployment, its world and a journal in a temp dir."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.world import SimWorld
from config.model import Deployment
from journal import Journal
from orchestrator import api
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems

NON_REPEATABLE = ("vm_import", "csr_create", "installation_wizard", "security_wizard", "role_create")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The simulations a test starts: any still running at its end (a failed assertion, a timeout) is
    killed and reaped, its pipes closed, so that it cannot outlive the test and fail a later one with
    ResourceWarnings (seen in CI: test_daemon_drift failed on a hung child's unclosed pipes)."""
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for proc in children:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture
def sim(tmp_path: Path) -> api.SimulationSettings:
    return api.SimulationSettings(
        nodes=4,
        latency=0.0,
        world=tmp_path / "world.sqlite",
        journal=tmp_path / "journal.sqlite",
        effects_out=tmp_path / "effects.json",
    )


async def simulate(settings: api.SimulationSettings, **changes: Any) -> tuple[Any, dict[str, Any]]:
    """Run a simulation with a fake clock (backoff takes no real time)."""
    import dataclasses

    return await api.simulate(dataclasses.replace(settings, **changes), clock=FakeClock())


async def run_engine(deployment: Deployment, tmp: Path, **options: Any) -> Any:
    """One auto-approved engine run of ``deployment`` on the twins (world and journal in ``tmp``), fake clock."""
    world = SimWorld.open(tmp / "world.sqlite")
    try:
        with api.open_journal(tmp / "journal.sqlite") as journal:
            return await run_on(deployment, journal, world, **options)
    finally:
        await world.aclose()


async def run_on(deployment: Deployment, journal: Journal, world: SimWorld, **options: Any) -> Any:
    """:func:`run_engine` over an open ``journal`` and ``world`` the caller keeps (to look at them after)."""
    systems = open_systems(deployment, world)
    try:
        engine = Engine(deployment, journal, systems, clock=FakeClock(), hooks=world, auto_approve=True)
        return await engine.run(**options)
    finally:
        await systems.aclose()
