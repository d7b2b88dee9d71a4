"""The real LDAP directory (adapters.ldap) against a private slapd: what the contract does not cover.

A wrong password, an untrusted CA, a server down or restarted, a server without StartTLS, the
forms of a user's name, a directory that differs from the configuration, and the Pexip twin's
LDAP logins asking slapd through the wiring.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from _sim_factory import authenticate_ldap, harden_manager, install_manager, make_deployment
from _slapd import Slapd, misnamed_pki, running_slapd, user_dn
from ldap3 import NONE, Connection, Server

from adapters.ldap import LdapDirectory
from adapters.sim import SimPexipApi, SimWorld
from config.errors import Rejected, Unreachable
from config.model import Deployment
from config.secrets import Secret
from orchestrator.lab import Pki, make_test_pki
from orchestrator.wiring import open_systems


def _with_ldap(deployment: Deployment, **changes: object) -> Deployment:
    return dataclasses.replace(deployment, ldap=dataclasses.replace(deployment.ldap, **changes))


def _group(deployment: Deployment, role: str) -> str:
    [dn] = [m.group_dn for m in deployment.ldap.role_mappings if role in m.roles]
    return dn


async def test_a_wrong_bind_password_is_rejected_naming_the_field_not_the_value(
    session_slapd: tuple[Slapd, Deployment], tmp_path: Path
) -> None:
    """Result 49 is Rejected (not retried), naming ldap.bind_password by its reference, never its value."""
    _, deployment = session_slapd
    wrong = tmp_path / "bind-password"
    wrong.write_text("not-the-service-password")
    directory = LdapDirectory.from_deployment(_with_ldap(deployment, bind_password=Secret(f"file:{wrong}")))
    async with directory:
        with pytest.raises(Rejected) as caught:
            await directory.verify_bind()
    message = str(caught.value)
    assert "result 49" in message and f"ldap.bind_password (file:{wrong})" in message
    assert "not-the-service-password" not in message and "not-the-service-password" not in repr(directory)
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("ca", "says"),
    [
        ("another", "not trusted"),  # a CA that did not sign slapd's certificate
        ("missing", "cannot be used"),  # a path with no file
        ("garbage", "cannot be used"),  # a file that holds no certificate
        ("system", "not trusted"),  # no ldap.ca_file: the system's CAs, which know no test CA
    ],
)
async def test_a_ca_that_cannot_verify_the_server_is_rejected_naming_ldap_ca_file(
    session_slapd: tuple[Slapd, Deployment], tmp_path: Path, ca: str, says: str
) -> None:
    """The server's certificate is always verified: a CA that cannot verify it stops the bind, naming ldap.ca_file."""
    _, deployment = session_slapd
    ca_file: str | None = None  # "system"
    if ca == "another":
        ca_file = str(make_test_pki(tmp_path, name="other", ca_name="Another CA").ca_file)
    elif ca == "missing":
        ca_file = str(tmp_path / "no-such-ca.pem")
    elif ca == "garbage":
        ca_file = str(tmp_path / "garbage.pem")
        Path(ca_file).write_text("not a certificate\n")
    async with LdapDirectory.from_deployment(_with_ldap(deployment, ca_file=ca_file)) as directory:
        with pytest.raises(Rejected, match=says) as caught:
            await directory.verify_bind()
    assert "ldap.ca_file" in str(caught.value) and not caught.value.retryable


async def test_a_server_that_is_down_is_unreachable_and_retryable(slapd: tuple[Slapd, Deployment]) -> None:
    """With slapd stopped, every call is Unreachable (retryable), naming the server and the fields to check."""
    server, deployment = slapd
    server.stop()
    async with LdapDirectory.from_deployment(deployment, timeout_s=2) as directory:
        for call in (directory.verify_bind(), directory.user_groups(deployment.ldap.verify_user)):
            with pytest.raises(Unreachable, match=r"127\.0\.0\.1.*check ldap\.server and ldap\.port") as caught:
                await call
            assert caught.value.retryable
            assert deployment.ldap.bind_password is not None
            assert deployment.ldap.bind_password.reveal() not in str(caught.value)


async def test_the_connection_is_made_again_after_the_server_restarts(slapd: tuple[Slapd, Deployment]) -> None:
    """A restart cuts the kept connection; the next call connects again and answers as before."""
    server, deployment = slapd
    async with LdapDirectory.from_deployment(deployment) as directory:
        await directory.verify_bind()
        before = await directory.user_groups(deployment.ldap.verify_user)
        server.restart()
        assert await directory.user_groups(deployment.ldap.verify_user) == before
        assert len(before) == len(deployment.ldap.role_mappings)


def test_the_test_server_refuses_a_bind_without_tls(session_slapd: tuple[Slapd, Deployment]) -> None:
    """slapd's ssf=64 refuses a plain bind (result 13): every bind the adapter makes there went over TLS."""
    server, deployment = session_slapd
    assert deployment.ldap.bind_password is not None
    plain = Connection(
        Server("127.0.0.1", port=server.port, get_info=NONE),
        deployment.ldap.bind_username,
        deployment.ldap.bind_password.reveal(),
    )
    try:
        assert not plain.bind()
        assert plain.result["result"] == 13  # confidentialityRequired
    finally:
        plain.unbind()


async def test_a_server_without_starttls_is_refused_never_bound_in_plain(slapd_pki: Pki, tmp_path: Path) -> None:
    """A server that offers no StartTLS is Rejected saying so; the adapter does not fall back to a plain bind."""
    deployment = make_deployment(1, tmp_path)
    with running_slapd(tmp_path / "plain", deployment.ldap, None) as server:
        pointed = _with_ldap(server.pointed_at(deployment), ca_file=str(slapd_pki.ca_file))
        async with LdapDirectory.from_deployment(pointed) as directory:
            with pytest.raises(Rejected, match="refused StartTLS.*never sends LDAP without TLS"):
                await directory.verify_bind()


@pytest.mark.parametrize(
    "form",
    [
        "{uid}",  # the user name, as the Manager's login form takes it
        "{uid}@sim.example.com",  # a UPN, as a client certificate in UPN mode carries it
        "{dn}",  # the DN itself
        "{DN}",  # the DN in capitals: DNs compare case-insensitively
    ],
)
async def test_a_user_is_found_by_name_upn_or_dn(session_slapd: tuple[Slapd, Deployment], form: str) -> None:
    """The verify user's groups are every mapped group, however the user is named."""
    _, deployment = session_slapd
    ldap = deployment.ldap
    user = form.format(uid=ldap.verify_user, dn=user_dn(ldap), DN=user_dn(ldap).upper())
    async with LdapDirectory.from_deployment(deployment) as directory:
        groups = await directory.user_groups(user)
    assert sorted(g.lower() for g in groups) == sorted(m.group_dn.lower() for m in ldap.role_mappings)


async def test_the_directory_says_what_it_holds_not_what_the_configuration_declares(
    slapd_pki: Pki, tmp_path: Path
) -> None:
    """A group the configuration maps but the directory lacks does not exist; each user has only its own groups."""
    deployment = make_deployment(1, tmp_path)
    ldap = deployment.ldap
    read_only, auditor = _group(deployment, "Read-only"), _group(deployment, "Auditor")
    members = {read_only: [user_dn(ldap)], auditor: [user_dn(ldap, "alice")]}  # no Read-write group at all
    with running_slapd(tmp_path / "slapd", ldap, slapd_pki, members=members, users={"alice": "alice-password"}) as s:
        async with LdapDirectory.from_deployment(s.pointed_at(deployment)) as directory:
            assert not await directory.group_exists(_group(deployment, "Read-write"))
            assert not await directory.group_exists(user_dn(ldap))  # an entry, but not a group
            assert await directory.user_groups(ldap.verify_user) == [read_only]
            assert await directory.user_groups("alice") == [auditor]
            assert await directory.user_groups("uid=nobody,ou=people,dc=sim,dc=example,dc=com") == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("base_dn", "dc=elsewhere,dc=example,dc=com"),  # a base the server does not hold
        ("user_search_dn", "ou=nobody"),  # a user search DN that is not there
        ("group_search_dn", "ou=no-groups"),  # nor this group search DN
    ],
)
async def test_verify_bind_proves_the_base_and_search_dns_exist(
    session_slapd: tuple[Slapd, Deployment], field: str, value: str
) -> None:
    """The service account binds, but a DN the Manager would search that is not there is Rejected, naming it."""
    _, deployment = session_slapd
    async with LdapDirectory.from_deployment(_with_ldap(deployment, **{field: value})) as directory:
        with pytest.raises(Rejected, match=f"ldap.{field}: .* does not exist"):
            await directory.verify_bind()


async def test_the_pexip_twins_ldap_logins_ask_slapd_through_the_wiring(
    slapd: tuple[Slapd, Deployment], world: SimWorld, tmp_path: Path
) -> None:
    """With ldap.mode real, the wiring hands the Pexip twin the real directory: a login gets the roles of
    the slapd groups the user is in, and loses one when slapd takes the user out of its group."""
    server, deployment = slapd
    systems = open_systems(deployment, world, journal=tmp_path / "journal.sqlite")
    try:
        assert isinstance(systems.directory, LdapDirectory)
        await install_manager(systems, deployment)
        await harden_manager(systems, deployment)
        assert await authenticate_ldap(systems, deployment) == "Auditor,Read-only,Read-write"
        server.remove_member(_group(deployment, "Read-write"), user_dn(deployment.ldap))
        # A new twin over the same world: the first one keeps who logs in until authentication changes.
        api = SimPexipApi(world, deployment, systems.directory)
        assert await api.verify_login(use_client_cert=True) == "Auditor,Read-only"
    finally:
        await systems.aclose()


async def test_an_empty_bind_password_is_refused_before_it_binds_anonymously(
    session_slapd: tuple[Slapd, Deployment], tmp_path: Path
) -> None:
    """An empty password would make a simple bind anonymous (RFC 4513): Rejected, naming ldap.bind_password."""
    _, deployment = session_slapd
    empty = tmp_path / "empty-password"
    empty.write_text("\n")
    async with LdapDirectory.from_deployment(_with_ldap(deployment, bind_password=Secret(f"file:{empty}"))) as d:
        with pytest.raises(Rejected, match="ldap.bind_password .* is empty"):
            await d.verify_bind()


@pytest.mark.slow  # 510 groups loaded into a slapd of their own: about 0.5 s per case
@pytest.mark.parametrize(
    "paging",
    [
        "unlimited",  # the service account may page past slapd's 500: every group comes back
        "default",  # slapd's default limit: the cut-short answer is refused, never taken as whole
    ],
)
async def test_more_groups_than_the_servers_size_limit(slapd_pki: Pki, tmp_path: Path, paging: str) -> None:
    """A user in more groups (510) than slapd answers by default (500) gets them all page by page, or a clear
    Rejected naming the limit to raise: never a silently truncated list."""
    deployment = make_deployment(1, tmp_path)
    ldap = deployment.ldap
    members = {f"cn=team-{i:03d},ou=groups,{ldap.base_dn}": [user_dn(ldap)] for i in range(510)}
    limits = [f'dn.exact="{ldap.bind_username}" size.prtotal=unlimited'] if paging == "unlimited" else []
    with running_slapd(tmp_path / "slapd", ldap, slapd_pki, members=members, limits=limits) as server:
        async with LdapDirectory.from_deployment(server.pointed_at(deployment)) as directory:
            if paging == "unlimited":
                groups = await directory.user_groups(ldap.verify_user)
                assert sorted(g.lower() for g in groups) == sorted(members)
            else:
                with pytest.raises(Rejected, match="stopped after 500 entries.*sizeLimitExceeded.*olcLimits"):
                    await directory.user_groups(ldap.verify_user)


async def test_a_name_that_matches_two_users_is_rejected(slapd: tuple[Slapd, Deployment]) -> None:
    """Two entries answering to one name: the Manager could not tell them apart, so neither does the adapter."""
    server, deployment = slapd
    ldap = deployment.ldap
    with server.admin() as conn:
        twin = f"uid={ldap.verify_user},{ldap.bind_username.split(',', 1)[1]}"  # the same uid in ou=services
        conn.add(twin, ["inetOrgPerson"], {"uid": ldap.verify_user, "cn": "twin", "sn": "twin"})
    async with LdapDirectory.from_deployment(_with_ldap(deployment, user_search_dn="")) as directory:
        with pytest.raises(Rejected, match="matches 2 entries"):
            await directory.user_groups(ldap.verify_user)


async def test_a_certificate_for_another_name_is_rejected_even_from_the_trusted_ca(tmp_path: Path) -> None:
    """The CA is trusted but the server's certificate names another host: Rejected, naming ldap.server."""
    files = misnamed_pki(tmp_path, "LDAP name test CA")
    deployment = make_deployment(1, tmp_path)
    with running_slapd(tmp_path / "slapd", deployment.ldap, files) as server:
        async with LdapDirectory.from_deployment(server.pointed_at(deployment)) as directory:
            with pytest.raises(Rejected, match="not valid for the name '127.0.0.1'.*set ldap.server"):
                await directory.verify_bind()
