"""The Directory contract: the service account's bind, the mapped groups and the verify user's membership."""

from __future__ import annotations

import dataclasses

import pytest
from _contract import DirectoryCase

from adapters.base import Directory
from config.errors import Rejected
from config.secrets import Secret


def test_is_a_directory(directory_case: DirectoryCase) -> None:
    """The implementation satisfies the Directory protocol."""
    assert isinstance(directory_case.directory, Directory)


async def test_the_service_account_binds(directory_case: DirectoryCase) -> None:
    """verify_bind with the declared service account succeeds."""
    await directory_case.directory.verify_bind()


@pytest.mark.parametrize("password", [None, "file:/nonexistent/bind-password"])  # unset; unreadable
async def test_a_bind_without_its_password_is_rejected(directory_case: DirectoryCase, password: str | None) -> None:
    """verify_bind without a usable service account password is Rejected."""
    deployment = directory_case.deployment
    ldap = dataclasses.replace(deployment.ldap, bind_password=Secret(password) if password else None)
    directory = directory_case.build(dataclasses.replace(deployment, ldap=ldap))
    try:
        with pytest.raises(Rejected):
            await directory.verify_bind()
    finally:
        await directory.aclose()


async def test_a_plain_transport_is_refused_under_the_guides_floor(directory_case: DirectoryCase) -> None:
    """ldap.transport 'plain' with the packaged policy (ldap_permit_no_tls false): Rejected, nothing sent in clear."""
    deployment = directory_case.deployment
    assert not deployment.policy.authentication.ldap_permit_no_tls
    plain = dataclasses.replace(deployment, ldap=dataclasses.replace(deployment.ldap, transport="plain"))
    directory = directory_case.build(plain)
    try:
        with pytest.raises(Rejected, match="'plain' would send the password without TLS.*policy forbids"):
            await directory.verify_bind()
    finally:
        await directory.aclose()


async def test_group_exists(directory_case: DirectoryCase) -> None:
    """Every mapped group exists (DNs compare case-insensitively); an unknown DN does not."""
    directory, ldap = directory_case.directory, directory_case.deployment.ldap
    for mapping in ldap.role_mappings:
        assert await directory.group_exists(mapping.group_dn)
        assert await directory.group_exists(mapping.group_dn.upper())
    assert not await directory.group_exists(f"cn=no-such-group-here,{ldap.base_dn}")


async def test_user_groups(directory_case: DirectoryCase) -> None:
    """The verify user is in every mapped group; an unknown user is in none."""
    directory, ldap = directory_case.directory, directory_case.deployment.ldap
    groups = {g.lower() for g in await directory.user_groups(ldap.verify_user)}
    assert {m.group_dn.lower() for m in ldap.role_mappings} <= groups
    assert await directory.user_groups("no-such-user-here") == []


async def test_aclose_is_idempotent(directory_case: DirectoryCase) -> None:
    """aclose after use, and again, raises nothing (the fixture closes a third time)."""
    await directory_case.directory.verify_bind()
    await directory_case.directory.aclose()
    await directory_case.directory.aclose()
