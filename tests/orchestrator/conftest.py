"""Fixtures for engine tests: a simulated deployment, its world and a journal in a temp dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator import api
from orchestrator.clock import FakeClock

NON_REPEATABLE = ("vm_import", "csr_create", "installation_wizard", "security_wizard", "role_create")


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
