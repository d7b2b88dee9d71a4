"""The real directory over ldaps (TLS from the first byte) beside StartTLS, and plain LDAP only where permitted.

slapd listens on both: StartTLS on ``Slapd.port``, ldaps on ``Slapd.ldaps_port``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from _sim_factory import make_deployment
from _slapd import Slapd, misnamed_pki, running_slapd

from adapters.ldap import LdapDirectory
from config.errors import Rejected, Unreachable
from config.model import Deployment
from orchestrator.lab import Pki, make_test_pki


def _with_ldap(deployment: Deployment, **changes: Any) -> Deployment:
    return dataclasses.replace(deployment, ldap=dataclasses.replace(deployment.ldap, **changes))


async def test_ldaps_binds_and_resolves_groups(session_slapd: tuple[Slapd, Deployment]) -> None:
    """Over ldaps the service account binds and the verify user's groups are every mapped group."""
    server, deployment = session_slapd
    ldaps = server.pointed_at(deployment, "ldaps")
    assert ldaps.ldap.port == server.ldaps_port != server.port
    async with LdapDirectory.from_deployment(ldaps) as directory:
        await directory.verify_bind()
        groups = await directory.user_groups(ldaps.ldap.verify_user)
    assert sorted(g.lower() for g in groups) == sorted(m.group_dn.lower() for m in ldaps.ldap.role_mappings)
    assert "ldaps://127.0.0.1" in repr(directory)


async def test_ldaps_with_a_ca_that_did_not_sign_the_server_is_rejected(
    session_slapd: tuple[Slapd, Deployment], tmp_path: Path
) -> None:
    """The ldaps handshake verifies the chain: another CA is Rejected naming ldap.ca_file, not retried."""
    server, deployment = session_slapd
    other = make_test_pki(tmp_path, name="other", ca_name="Another CA").ca_file
    ldaps = _with_ldap(server.pointed_at(deployment, "ldaps"), ca_file=str(other))
    async with LdapDirectory.from_deployment(ldaps) as directory:
        with pytest.raises(Rejected, match="not trusted.*set ldap.ca_file") as caught:
            await directory.verify_bind()
    assert not caught.value.retryable


async def test_ldaps_with_a_certificate_for_another_name_is_rejected(tmp_path: Path) -> None:
    """The CA is trusted, the certificate names another host: the ldaps handshake fails naming ldap.server."""
    files = misnamed_pki(tmp_path, "LDAPS name test CA")
    deployment = make_deployment(1, tmp_path)
    with running_slapd(tmp_path / "slapd", deployment.ldap, files) as server:
        async with LdapDirectory.from_deployment(server.pointed_at(deployment, "ldaps")) as directory:
            with pytest.raises(Rejected, match="not valid for the name '127.0.0.1'.*set ldap.server"):
                await directory.verify_bind()


async def test_ldaps_at_a_starttls_port_says_which_transport_to_set(session_slapd: tuple[Slapd, Deployment]) -> None:
    """A TLS handshake sent to a plain-LDAP port fails; the error names ldap.transport 'starttls'."""
    server, deployment = session_slapd
    wrong = _with_ldap(server.pointed_at(deployment, "ldaps"), port=server.port)
    async with LdapDirectory.from_deployment(wrong, timeout_s=3) as directory:
        with pytest.raises(Unreachable, match="expects TLS from the first byte.*ldap.transport = 'starttls'"):
            await directory.verify_bind()


async def test_plain_transport_is_refused_unless_the_policy_permits_it(slapd_pki: Pki, tmp_path: Path) -> None:
    """Under the guide's floor (ldap_permit_no_tls false) 'plain' is refused before a byte is sent, even to a
    server that would take it; a policy that permits no TLS binds in plain."""
    deployment = make_deployment(1, tmp_path)
    assert deployment.policy.authentication.ldap_permit_no_tls is False
    with running_slapd(tmp_path / "plain", deployment.ldap, None, require_tls=False) as server:
        plain = server.pointed_at(deployment, "plain")
        async with LdapDirectory.from_deployment(plain) as directory:
            with pytest.raises(Rejected, match="'plain' would send the password without TLS.*policy forbids"):
                await directory.verify_bind()
        async with LdapDirectory.from_deployment(plain, permit_plain=True) as directory:
            await directory.verify_bind()
            assert await directory.user_groups(plain.ldap.verify_user)
