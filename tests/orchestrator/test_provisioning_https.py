"""A whole run over the network: the real Management API client against the lab's API server, the
Conferencing Nodes provisioned over HTTPS by the real client through the provisioning simulator."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from adapters.sim import SimDirectory
from adapters.sim.servers._pexip_auth import make_client_identity
from adapters.sim.servers.pexip_http import PexipServer
from adapters.sim.servers.provisioning_http import ProvisioningServers
from adapters.sim.world import SimWorld
from config.load import simulated_deployment
from config.secrets import Secret
from orchestrator import api
from orchestrator.clock import FakeClock


async def test_a_run_over_the_real_clients_reaches_the_end_and_a_rerun_writes_nothing(tmp_path: Path) -> None:
    """With pexip_api real, the Management Node and 2 Conferencing Nodes reach ldap_authenticated through
    the HTTPS API server (logins ending on the client certificate), each node's file is uploaded once, and
    a second run sends no POST, PATCH or DELETE."""
    deployment = simulated_deployment(3, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    client = make_client_identity(tmp_path / "client", deployment.ldap.verify_user, deployment.ldap.client_certificate)
    servers = ProvisioningServers(world, deployment, tmp_path / "provisioning", poll_s=0.002)
    manager = PexipServer(
        world, deployment, SimDirectory(world, deployment), tmp_path / "pexip", client_ca_file=client.ca_file
    )
    try:
        await servers.start()
        await manager.__aenter__()
        nodes = tuple(
            dataclasses.replace(
                n, provisioning_url=servers.url(n.name), provisioning_thumbprint=servers.thumbprint(n.name)
            )
            for n in deployment.conferencing
        )
        port = manager.url.rsplit(":", 1)[1]
        pexip_api = dataclasses.replace(
            deployment.pexip_api,
            mode="real",
            url=f"https://{deployment.management.fqdn}:{port}",  # by name: host headers are validated once secured
            address="127.0.0.1",
            ca_file=str(manager.cert_file),
            client_cert=str(client.cert_file),
            client_key=Secret(f"file:{client.key_file}"),
        )
        real = dataclasses.replace(deployment, conferencing=nodes, pexip_api=pexip_api)
        writes = []
        for _ in range(2):
            with api.open_journal(tmp_path / "journal.sqlite") as journal:
                report = await api.drive(real, journal, world=world, hooks=world, auto_approve=True, clock=FakeClock())
                assert report.exit_code == 0
                assert {r.state for r in journal.nodes()} == {"ldap_authenticated"}
            writes.append(manager.writes())
        assert writes[0] > 0 and writes[1] == writes[0]  # the rerun sent no POST, PATCH or DELETE
        assert manager.requests[("GET", 200)] > 0
        posts = {
            node: n for (node, method, status), n in servers.requests.items() if method == "POST" and status == 200
        }
        assert posts == {n.name: 1 for n in nodes}
    finally:
        await manager.__aexit__(None, None, None)
        await servers.aclose()
        await world.aclose()
