"""The whole path to ``ldap_authenticated`` over the network with a real directory (issue #9, Tests): the real
Management API client against the lab's HTTPS server, whose logins bind to a private slapd on every request.

Afterwards the Manager takes only what the guide leaves: the local admin is refused, the orchestrator's
certificate identity is accepted (one bind per request), a certificate from the same trusted CA naming an
identity LDAP does not know is refused, and while slapd is down no LDAP login works, until it is back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from _https_manager import https_manager
from _slapd import Slapd

from adapters.pexip import HttpPexipApi
from adapters.sim import SimWorld
from config.errors import AdapterError
from config.model import Deployment
from config.secrets import Secret
from orchestrator import api
from orchestrator.clock import FakeClock
from orchestrator.lab import issue_client_certificate

# A slapd, the HTTPS server and a run of the Management Node: about 2 s.
pytestmark = pytest.mark.slow

GLOBAL = "/api/admin/configuration/v1/global/1/"


async def test_after_the_run_only_a_certificate_identity_ldap_knows_gets_in_and_each_request_binds(
    slapd: tuple[Slapd, Deployment], world: SimWorld, tmp_path: Path
) -> None:
    """LDAP-only with client certificates at the end; local admin 401, the orchestrator's certificate 200 with one
    bind per request, a stranger's certificate (trusted CA, unknown to LDAP) 401, no LDAP login while slapd is
    down (the Manager asks it on every request, never a cached answer), and in again once it is back."""
    server, deployment = slapd
    async with https_manager(world, deployment, tmp_path) as (real, manager, clients):
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            report = await api.drive(real, journal, world=world, hooks=world, auto_approve=True, clock=FakeClock())
            assert report.exit_code == 0, report.outcomes
            assert {n.state for n in journal.nodes()} == {"ldap_authenticated"}

        def client(**changes: object) -> HttpPexipApi:
            return HttpPexipApi(dataclasses.replace(real.pexip_api, **changes), ldap=real.ldap, retry_delay_s=0.01)

        local = client(client_cert=None, client_key=None)
        try:
            with pytest.raises(AdapterError, match="401"):
                await local.get(GLOBAL)
        finally:
            await local.aclose()

        orchestrator = client()
        try:
            await orchestrator.get(GLOBAL)
            binds = manager.ldap_binds
            for _ in range(5):
                assert (await orchestrator.get(GLOBAL))["resource_uri"] == GLOBAL
            assert manager.ldap_binds - binds == 5  # one bind per request
            server.stop()
            with pytest.raises(AdapterError, match="401|cannot bind"):
                await orchestrator.get(GLOBAL)
            server.start()
            assert (await orchestrator.get(GLOBAL))["resource_uri"] == GLOBAL
        finally:
            await orchestrator.aclose()

        cert, key = tmp_path / "stranger.pem", tmp_path / "stranger.key"
        issue_client_certificate(
            clients, "stranger", real.ldap.client_certificate, cert, key, domain="sim.example.com"
        )  # signed by the CA the Manager trusts: only the directory can tell
        stranger = client(client_cert=str(cert), client_key=Secret(f"file:{key}"))
        try:
            with pytest.raises(AdapterError, match="'stranger'.* is not in the directory"):
                await stranger.get(GLOBAL)
        finally:
            await stranger.aclose()
