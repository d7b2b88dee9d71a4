"""The Management API over the network for a test or a bench: the lab's HTTPS server (its logins asking a directory
on every request, as a Manager binds to LDAP on each) and the deployment with ``pexip_api`` real, pointed at it.

async with https_manager(world, deployment, tmp_path) as (real, server, clients):
    ...  # drive ``real``; server.requests, server.ldap_binds count what the Manager answered and bound;
    ...  # clients: the client CA the Manager trusts (issue_client_certificate makes others' certificates)
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from adapters.base import Directory
from adapters.ldap import LdapDirectory
from adapters.sim import SimDirectory, SimWorld
from adapters.sim.servers.pexip_http import PexipServer
from config.model import Deployment
from config.secrets import Secret
from orchestrator.lab import Pki, issue_client_certificate, make_test_pki

__all__ = ["https_manager"]


@asynccontextmanager
async def https_manager(
    world: SimWorld, deployment: Deployment, directory: Path
) -> AsyncIterator[tuple[Deployment, PexipServer, Pki]]:
    """The server over ``world``, asking the deployment's directory (its own connection to slapd when ``ldap`` is
    real, as a Manager has its own), trusting a test client CA; and ``deployment`` with ``pexip_api`` real, by
    the Manager's FQDN at 127.0.0.1, with the orchestrator's client certificate from that CA."""
    ldap = deployment.ldap
    clients = make_test_pki(directory / "clients", name="clients", ca_name="Test client-certificate CA")
    cert, key = directory / "clients" / "orchestrator.pem", directory / "clients" / "orchestrator.key"
    issue_client_certificate(clients, ldap.verify_user, ldap.client_certificate, cert, key, domain=_DOMAIN)
    manager: Directory = (
        LdapDirectory.from_deployment(deployment) if ldap.mode == "real" else SimDirectory(world, deployment)
    )
    try:
        async with PexipServer(
            world, deployment, manager, directory / "pexip", client_ca_file=clients.ca_file
        ) as server:
            port = server.url.rsplit(":", 1)[1]
            pexip_api = dataclasses.replace(
                deployment.pexip_api,
                mode="real",
                url=f"https://{deployment.management.fqdn}:{port}",  # by name: host headers are validated once secured
                address="127.0.0.1",
                ca_file=str(server.cert_file),
                client_cert=str(cert),
                client_key=Secret(f"file:{key}"),
            )
            yield dataclasses.replace(deployment, pexip_api=pexip_api), server, clients
    finally:
        await manager.aclose()


_DOMAIN = "sim.example.com"  # the UPN's domain: the Manager reads only the name before the @
