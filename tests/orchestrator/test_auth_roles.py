"""The orchestrator's own identity must map to Read-write before client certificates are required."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from adapters.sim import SimDirectory, SimWorld
from config.errors import ConfigError, Rejected
from config.load import simulated_deployment
from config.model import Deployment
from orchestrator.steps import StepContext
from orchestrator.steps.auth_steps import ORCHESTRATOR_ROLE, _certificate_identity_is_admin
from orchestrator.wiring import open_systems


def _directory_of(world: SimWorld, deployment: Deployment, roles: set[str]) -> SimDirectory:
    """A directory whose verify user is only in the groups of the mappings of ``roles``."""
    mappings = tuple(m for m in deployment.ldap.role_mappings if set(m.roles) & roles)
    return SimDirectory(
        world, dataclasses.replace(deployment, ldap=dataclasses.replace(deployment.ldap, role_mappings=mappings))
    )


@pytest.mark.parametrize(
    ("roles", "allowed"),
    [
        ({"Read-only", "Read-write", "Auditor"}, True),  # the simulated directory: every group
        ({"Read-write"}, True),  # Read-write alone is full administrative access
        ({"Read-only", "Auditor"}, False),  # neither can make the later steps' changes
    ],
)
async def test_client_certificates_need_the_identity_in_a_read_write_group(
    tmp_path: Path, roles: set[str], allowed: bool
) -> None:
    """The check before requiring client certificates passes only when the identity's groups map to Read-write."""
    assert ORCHESTRATOR_ROLE == "Read-write"
    deployment = simulated_deployment(1, tmp_path / "w.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        systems = dataclasses.replace(
            open_systems(deployment, world), directory=_directory_of(world, deployment, roles)
        )
        ctx = StepContext(deployment, deployment.management, systems)
        if allowed:
            await _certificate_identity_is_admin(ctx)
        else:
            with pytest.raises(Rejected, match="must map to Read-write"):
                await _certificate_identity_is_admin(ctx)
    finally:
        await world.aclose()


async def test_real_pexip_api_provisions_over_https(tmp_path: Path) -> None:
    """pexip_api.mode = real wires the real API client and the HTTPS provisioning client, refused (exit 2)
    while a node cannot be verified."""
    from adapters.pexip import HttpPexipApi
    from adapters.provisioning import HttpsProvisioning

    deployment = simulated_deployment(2, tmp_path / "w.d")
    real = dataclasses.replace(deployment, pexip_api=dataclasses.replace(deployment.pexip_api, mode="real"))
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with pytest.raises(ConfigError, match=r"conferencing\[0\]\.provisioning_thumbprint"):
            open_systems(real, world)
        pin = "sha256:" + ":".join(["AB"] * 32)
        pinned = dataclasses.replace(
            real, conferencing=tuple(dataclasses.replace(n, provisioning_thumbprint=pin) for n in real.conferencing)
        )
        systems = open_systems(pinned, world)
        assert isinstance(systems.provisioning, HttpsProvisioning)
        assert isinstance(systems.pexip, HttpPexipApi)
        await systems.aclose()
    finally:
        await world.aclose()
