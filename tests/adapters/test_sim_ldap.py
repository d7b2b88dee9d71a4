"""The simulated LDAP directory: the groups, the verify user and the service account."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from _sim_factory import make_deployment

from adapters import Directory
from adapters.sim import SimDirectory, SimWorld
from config.errors import Rejected
from config.model import Deployment
from config.secrets import Secret


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return make_deployment(1, tmp_path)


def test_conforms_to_the_protocol(world: SimWorld, deployment: Deployment) -> None:
    """SimDirectory is a Directory."""
    assert isinstance(SimDirectory(world, deployment), Directory)


async def test_directory_holds_the_declared_groups(world: SimWorld, deployment: Deployment) -> None:
    """Every mapped group exists and the verify user is in all of them; others are in none."""
    directory = SimDirectory(world, deployment)
    groups = [m.group_dn for m in deployment.ldap.role_mappings]
    for dn in groups:
        assert await directory.group_exists(dn)
        assert await directory.group_exists(dn.upper())  # DNs compare case-insensitively
    assert not await directory.group_exists("cn=nobody,ou=groups,dc=sim,dc=example,dc=com")
    user = deployment.ldap.verify_user
    for form in (user, f"{user}@sim.example.com", f"uid={user},ou=people,{deployment.ldap.base_dn}"):
        assert await directory.user_groups(form) == groups
    assert await directory.user_groups("mallory") == []


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("declared", None),  # the declared secret binds
        (None, "not set"),  # no password at all
        ("file:/nonexistent/bind-password", "cannot be read"),  # a reference that cannot be read
    ],
)
async def test_service_account_bind(
    world: SimWorld, deployment: Deployment, password: str | None, message: str | None
) -> None:
    """The service account binds with its declared password, and not without one."""
    if password != "declared":
        ldap = dataclasses.replace(deployment.ldap, bind_password=Secret(password) if password else None)
        deployment = dataclasses.replace(deployment, ldap=ldap)
    directory = SimDirectory(world, deployment)
    if message is None:
        await directory.verify_bind()
    else:
        with pytest.raises(Rejected, match=message):
            await directory.verify_bind()
