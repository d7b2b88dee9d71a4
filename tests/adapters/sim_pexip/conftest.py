"""The simulated Management API's tests: three nodes, the Management Node installed (the API answers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _sim_factory import install_manager, make_deployment, make_systems

from adapters import Systems
from adapters.sim import SimWorld
from config.model import Deployment


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return make_deployment(3, tmp_path)


@pytest.fixture
async def systems(world: SimWorld, deployment: Deployment) -> Systems:
    """A world whose Management Node is installed (the API answers)."""
    s = make_systems(world, deployment)
    await install_manager(s, deployment)
    return s
