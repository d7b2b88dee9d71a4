"""HttpPexipApi's logins against the lab's Management API server: Basic, LDAP and mutual TLS, as a Manager does."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _sim_factory import authenticate_ldap, install_manager, make_deployment, make_systems

from adapters.base import Systems
from adapters.pexip import HttpPexipApi
from adapters.sim import SimWorld
from adapters.sim.servers._pexip_auth import make_client_identity
from adapters.sim.servers.pexip_http import PexipServer
from config.errors import AdapterError, Rejected
from config.model import Deployment
from config.secrets import Secret

GLOBAL = "/api/admin/configuration/v1/global/1/"


@pytest.fixture(params=["CN", "UPN"])
async def served(
    request: pytest.FixtureRequest, world: SimWorld, tmp_path: Path
) -> AsyncIterator[tuple[Deployment, PexipServer]]:
    """An installed Manager served over HTTPS, trusting a client CA; the deployment points the real client at it.
    The orchestrator's identity is in its certificate's subject CN, or in its userPrincipalName (UPN)."""
    deployment = make_deployment(1, tmp_path)
    deployment = dataclasses.replace(
        deployment, ldap=dataclasses.replace(deployment.ldap, client_certificate=request.param)
    )
    systems = make_systems(world, deployment)
    await install_manager(systems, deployment)
    user = deployment.ldap.verify_user
    # UPN: a CN that is not the user, so only the userPrincipalName can name it.
    client = make_client_identity(tmp_path / "client", user, request.param)
    async with PexipServer(
        world, deployment, systems.directory, tmp_path / "pexip", client_ca_file=client.ca_file
    ) as server:
        spec = dataclasses.replace(
            deployment.pexip_api,
            mode="real",
            url=server.url,
            ca_file=str(server.cert_file),
            client_cert=str(client.cert_file),
            client_key=Secret(f"file:{client.key_file}"),
        )
        yield dataclasses.replace(deployment, pexip_api=spec), server


def _client(deployment: Deployment) -> HttpPexipApi:
    return HttpPexipApi(deployment.pexip_api, ldap=deployment.ldap, retry_delay_s=0.01)


async def test_a_wrong_admin_password_is_refused_naming_the_login(
    served: tuple[Deployment, PexipServer], tmp_path: Path
) -> None:
    """The local admin with a password the wizard did not set is refused (401), the password never quoted."""
    deployment, _ = served
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-wizard-password")
    spec = dataclasses.replace(deployment.pexip_api, admin_password=Secret(f"file:{wrong}"), client_cert=None)
    api = HttpPexipApi(spec, ldap=deployment.ldap, retry_delay_s=0.01)
    try:
        with pytest.raises(Rejected, match="401") as caught:
            await api.get(GLOBAL)
        assert "not-the-wizard-password" not in str(caught.value)
    finally:
        await api.aclose()


async def test_after_ldap_and_certificates_a_new_client_logs_in_by_certificate(
    served: tuple[Deployment, PexipServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Once the Manager requires certificates and LDAP only, a new client's Basic login is refused and it
    switches to its client certificate by itself; no password reaches the log."""
    caplog.set_level(logging.DEBUG)
    deployment, server = served
    api = _client(deployment)
    try:
        systems = Systems(vsphere=None, pexip=api, console=None, ca=None, directory=None)  # type: ignore[arg-type]
        assert "client certificate" in await authenticate_ldap(systems, deployment)
    finally:
        await api.aclose()
    refused_before = server.requests[("GET", 401)]
    again = _client(deployment)
    try:
        assert (await again.get(GLOBAL))["resource_uri"] == GLOBAL
        assert server.requests[("GET", 401)] == refused_before + 1  # the Basic attempt, then the certificate
        assert "client certificate" in await again.verify_login(use_client_cert=True)
    finally:
        await again.aclose()
    assert deployment.pexip_api.admin_password is not None and deployment.ldap.verify_password is not None
    for secret in (deployment.pexip_api.admin_password, deployment.ldap.verify_password):
        assert secret.reveal() not in caplog.text


async def test_a_certificate_from_another_ca_is_refused(served: tuple[Deployment, PexipServer], tmp_path: Path) -> None:
    """A client certificate the Manager does not trust gets no login, before or after certificates are required."""
    deployment, _ = served
    other = make_client_identity(tmp_path / "other", deployment.ldap.verify_user)
    spec = dataclasses.replace(
        deployment.pexip_api, client_cert=str(other.cert_file), client_key=Secret(f"file:{other.key_file}")
    )
    api = HttpPexipApi(spec, ldap=deployment.ldap, retry_delay_s=0.01)
    try:
        with pytest.raises(AdapterError):
            await api.verify_login(use_client_cert=True)
    finally:
        await api.aclose()
