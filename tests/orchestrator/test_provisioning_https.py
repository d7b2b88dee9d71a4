"""A whole run whose Conferencing Nodes are provisioned over HTTPS, by the real client, through the simulator."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from adapters.sim.servers.provisioning_http import ProvisioningServers
from adapters.sim.world import SimWorld
from config.load import simulated_deployment
from orchestrator import api
from orchestrator.clock import FakeClock

CONF = "pexip-conf-00001"


async def test_a_run_provisions_each_node_over_https_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With pexip_api real, provision_node uploads each node's file over HTTPS once; a rerun uploads nothing."""
    from orchestrator import wiring

    monkeypatch.delitem(wiring.NOT_YET_REAL, "pexip_api")  # the Manager stays the twin: only the upload is real
    deployment = simulated_deployment(3, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    servers = ProvisioningServers(world, deployment, tmp_path / "provisioning", poll_s=0.002)
    try:
        await servers.start()
        nodes = tuple(
            dataclasses.replace(
                n, provisioning_url=servers.url(n.name), provisioning_thumbprint=servers.thumbprint(n.name)
            )
            for n in deployment.conferencing
        )
        real = dataclasses.replace(
            deployment, conferencing=nodes, pexip_api=dataclasses.replace(deployment.pexip_api, mode="real")
        )
        for _ in range(2):
            with api.open_journal(tmp_path / "journal.sqlite") as journal:
                report = await api.drive(real, journal, world=world, hooks=world, auto_approve=True, clock=FakeClock())
                assert report.exit_code == 0
                assert {r.state for r in journal.nodes()} == {"ldap_authenticated"}
        posts = {
            node: n for (node, method, status), n in servers.requests.items() if method == "POST" and status == 200
        }
        assert posts == {n.name: 1 for n in nodes}
    finally:
        await servers.aclose()
        await world.aclose()
