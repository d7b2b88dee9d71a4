"""Who can log in to the simulated Management API: local admin, LDAP and client certificates, in the guide's order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from _sim_factory import (
    AUTH,
    GLOBAL,
    authenticate_ldap,
    deploy_vm,
    harden_manager,
    ldap_with_local,
    make_systems,
)

from adapters import Systems
from adapters.sim import FaultPlan, SimDirectory, SimPexipApi, SimWorld
from config.errors import Rejected, Unreachable
from config.model import Deployment


async def test_guide_order_keeps_a_login_at_every_step(systems: Systems, deployment: Deployment) -> None:
    """LDAP+LOCAL, mappings, client certificate, then LDAP only: verified logins all along."""
    assert await systems.pexip.verify_login(use_client_cert=False) == "local admin"
    await harden_manager(systems, deployment)
    roles = await authenticate_ldap(systems, deployment)
    assert roles == "Auditor,Read-only,Read-write"
    assert (await systems.pexip.get(AUTH))["source"] == "LDAP"
    with pytest.raises(Rejected, match="client certificate is required"):
        await systems.pexip.verify_login(use_client_cert=False)


async def test_careless_order_locks_everyone_out(systems: Systems, deployment: Deployment) -> None:
    """LDAP only with client certificates but no role mapping: verify_login warns, then calls fail."""
    api = systems.pexip
    await api.patch(AUTH, ldap_with_local(deployment))
    with pytest.raises(Rejected, match="no ldap_role maps a group"):
        await api.verify_login(use_client_cert=False)  # the check a careful engine makes first
    await api.patch(AUTH, {"client_certificate": "CN"})  # still reachable: the change applies
    with pytest.raises(Rejected, match="locked out"):
        await api.patch(AUTH, {"source": "LDAP"})
    with pytest.raises(Rejected, match="locked out"):
        await api.list_objects("dns_server")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ldap_bind_password": "wrong-password"}, "ldap_bind_password"),  # the bind would fail
        ({"ldap_server": "elsewhere.example.com"}, "ldap_server"),  # no directory there
        ({"ldap_base_dn": "dc=other"}, "ldap_base_dn"),  # user not found under that base
    ],
)
async def test_ldap_login_names_what_is_wrong(
    systems: Systems, deployment: Deployment, change: dict, reason: str
) -> None:
    """An LDAP login that cannot work says which authentication setting breaks it."""
    await harden_manager(systems, deployment)
    await authenticate_ldap(systems, deployment)
    await systems.pexip.patch(AUTH, {"source": "LDAP+LOCAL", "client_certificate": "NO"})
    await systems.pexip.patch(AUTH, change)  # the local admin still gets in
    with pytest.raises(Rejected, match=reason):
        await systems.pexip.verify_login(use_client_cert=True)


async def test_wrong_admin_password_is_not_a_local_login(
    world: SimWorld, deployment: Deployment, tmp_path: Path
) -> None:
    """If the API password is not the one the installation wizard set, every call is locked out."""
    systems = make_systems(world, deployment)
    await deploy_vm(systems, deployment, deployment.management)
    await systems.console.installation_wizard(
        deployment.management, "not-the-configured-one", deployment.policy.installation_wizard.settings()
    )
    with pytest.raises(Rejected, match="locked out.*installation wizard set"):
        await systems.pexip.get(GLOBAL)


def _directory_with(world: SimWorld, deployment: Deployment, groups: tuple[str, ...]) -> SimDirectory:
    """A directory whose verify user is in only the groups of the role mappings named ``groups``."""
    mappings = tuple(m for m in deployment.ldap.role_mappings if m.name in groups)
    ldap = dataclasses.replace(deployment.ldap, role_mappings=mappings)
    return SimDirectory(world, dataclasses.replace(deployment, ldap=ldap))


@pytest.mark.parametrize(
    ("groups", "roles"),
    [
        (
            ("Pexip Read-only", "Pexip Read-write", "Pexip Auditor"),
            "Auditor,Read-only,Read-write",
        ),  # the deployment's own directory
        (("Pexip Auditor",), "Auditor"),  # a directory that holds only the auditors' group
        (("Pexip Read-only", "Pexip Auditor"), "Auditor,Read-only"),  # two of the three groups
    ],
)
async def test_ldap_login_follows_the_directory_it_is_handed(
    world: SimWorld, systems: Systems, deployment: Deployment, groups: tuple[str, ...], roles: str
) -> None:
    """The LDAP roles granted are those of the groups the handed directory puts the user in, not the config's."""
    await harden_manager(systems, deployment)
    await authenticate_ldap(systems, deployment)
    api = SimPexipApi(world, deployment, _directory_with(world, deployment, groups))
    assert await api.verify_login(use_client_cert=True) == roles


async def test_a_directory_without_the_user_locks_ldap_logins_out(
    world: SimWorld, systems: Systems, deployment: Deployment
) -> None:
    """With LDAP the only source, a directory that does not know the verify user leaves no login."""
    await harden_manager(systems, deployment)
    await authenticate_ldap(systems, deployment)
    api = SimPexipApi(world, deployment, _directory_with(world, deployment, ()))
    with pytest.raises(Rejected, match="is not in the directory"):
        await api.verify_login(use_client_cert=True)
    with pytest.raises(Rejected, match="locked out.*is not in the directory"):
        await api.get(GLOBAL)
    assert await systems.pexip.verify_login(use_client_cert=True)  # the deployment's directory still grants


async def test_an_unreachable_directory_is_not_a_lock_out(
    world: SimWorld, systems: Systems, deployment: Deployment, tmp_path: Path
) -> None:
    """A directory that does not answer makes the call Unreachable (retryable), not a lock-out that sticks."""
    await harden_manager(systems, deployment)
    await authenticate_ldap(systems, deployment)
    ldap_world = SimWorld.open(tmp_path / "ldap.sqlite", faults="transient=1")
    try:
        api = SimPexipApi(world, deployment, SimDirectory(ldap_world, deployment))
        with pytest.raises(Unreachable, match="ldap: search groups of"):
            await api.get(GLOBAL)
        ldap_world.faults = FaultPlan()  # the directory answers again
        assert (await api.get(GLOBAL))["resource_uri"] == GLOBAL
    finally:
        ldap_world.close()


async def test_the_gate_sees_each_change_of_the_manager_between_calls(
    systems: Systems, deployment: Deployment, world: SimWorld
) -> None:
    """The same API object, called again and again: its VM off, then on, then its console, then its logins."""
    from adapters.sim.world import CONSOLE, VM

    api, manager = systems.pexip, deployment.management.name
    assert await api.list_objects("dns_server") == []
    vm = world.get(VM, manager)
    await world.apply([(VM, manager, {**vm, "power_state": "poweredOff"})])
    with pytest.raises(Unreachable, match="powered off"):
        await api.list_objects("dns_server")
    await world.apply([(VM, manager, vm)])
    assert await api.list_objects("dns_server") == []
    console = world.get(CONSOLE, manager)
    await world.apply([(CONSOLE, manager, {**console, "wizard_state": "new"})])
    with pytest.raises(Unreachable, match="installation wizard has not run yet"):
        await api.list_objects("dns_server")
    await world.apply([(CONSOLE, manager, {**console, "admin_password_sha256": "0" * 64})])
    with pytest.raises(Rejected, match="locked out"):
        await api.list_objects("dns_server")
    await world.apply([(CONSOLE, manager, console)])
    assert await api.list_objects("dns_server") == []
