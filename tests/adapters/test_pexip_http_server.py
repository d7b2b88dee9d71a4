"""The lab's Management API server (adapters/sim/servers/pexip_http.py) over the wire: auth, paging,
POST's Location, Tastypie-shaped 400s, 404, and the write count."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from _sim_factory import install_manager, make_deployment, make_systems

from adapters.sim import SimWorld
from adapters.sim.servers.pexip_http import PexipServer

CONFIG = "/api/admin/configuration/v1/"


def _auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_server_serves_the_twin(world: SimWorld, tmp_path: Path) -> None:
    deployment = make_deployment(1, tmp_path)
    systems = make_systems(world, deployment)
    await install_manager(systems, deployment)
    assert deployment.pexip_api.admin_password is not None
    good = _auth(deployment.pexip_api.admin_user, deployment.pexip_api.admin_password.reveal())
    async with PexipServer(world, deployment, systems.directory, tmp_path / "pexip") as server:
        ctx = ssl.create_default_context(cafile=str(server.cert_file))
        async with aiohttp.ClientSession(base_url=server.url, connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            async with http.get(f"{CONFIG}dns_server/", headers=_auth("admin", "wrong")) as r:
                assert r.status == 401
            for i in range(23):
                async with http.post(f"{CONFIG}dns_server/", json={"address": f"192.0.2.{i + 1}"}, headers=good) as r:
                    assert r.status == 201, await r.text()
                    assert r.headers["Location"].startswith(f"{CONFIG}dns_server/")
            async with http.get(f"{CONFIG}dns_server/", headers=good) as r:
                page: dict[str, Any] = await r.json()
            assert page["meta"]["total_count"] >= 23 and len(page["objects"]) == 20
            assert page["meta"]["next"] and page["meta"]["previous"] is None
            async with http.get(page["meta"]["next"], headers=good) as r:
                second = await r.json()
            assert len(second["objects"]) == page["meta"]["total_count"] - 20
            async with http.post(f"{CONFIG}dns_server/", json={"address": "not an address"}, headers=good) as r:
                assert r.status == 400
                assert "dns_server" in await r.json()
            async with http.get(f"{CONFIG}dns_server/99999/", headers=good) as r:
                assert r.status == 404
            writes = server.writes()
            async with http.get(f"{CONFIG}dns_server/", headers=good) as r:
                assert r.status == 200
            assert server.writes() == writes == 24
