"""adapters.pexip.HttpPexipApi against the lab's server (adapters/sim/servers/pexip_http.py) on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import logging
import socket
from pathlib import Path

import pytest
from _sim_factory import make_deployment, served_manager

from adapters.pexip import HttpPexipApi
from adapters.sim import SimWorld
from adapters.sim import _pki as pki
from config.errors import Rejected, Unreachable


async def test_client_pages_creates_and_parses_400(
    world: SimWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with served_manager(world, tmp_path) as (deployment, _, _, spec):
        api = HttpPexipApi(spec, retry_delay_s=0.01)
        try:
            before = len(await api.list_objects("dns_server"))
            uris = [(await api.create("dns_server", {"address": f"192.0.2.{i + 1}"})).uri for i in range(25)]
            assert all(u.startswith("/api/admin/configuration/v1/dns_server/") for u in uris)
            listed = await api.list_objects("dns_server")
            assert len(listed) == before + 25  # more than one page of 20
            assert (await api.get(uris[0]))["address"] == "192.0.2.1"
            await api.patch(uris[0], {"description": "first"})
            assert (await api.get(uris[0]))["description"] == "first"
            with pytest.raises(Rejected, match="address"):
                await api.create("dns_server", {"address": "not an address"})
            await api.delete(uris[1])
            with pytest.raises(Rejected, match="404"):
                await api.get(uris[1])
        finally:
            await api.aclose()
        other = tmp_path / "other.pem"
        other.write_text(pki.make_root("someone else")[1])
        wrong = HttpPexipApi(dataclasses.replace(spec, ca_file=str(other)))
        try:
            with pytest.raises(Rejected, match="pexip_api.ca_file"):
                await wrong.list_objects("dns_server")
        finally:
            await wrong.aclose()
    assert deployment.pexip_api.admin_password is not None
    assert deployment.pexip_api.admin_password.reveal() not in caplog.text


async def test_connection_refused_is_retryable(tmp_path: Path) -> None:
    deployment = make_deployment(1, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = HttpPexipApi(dataclasses.replace(deployment.pexip_api, url=f"https://127.0.0.1:{port}"), retry_delay_s=0.01)
    try:
        with pytest.raises(Unreachable) as caught:
            await api.list_objects("dns_server")
        assert caught.value.retryable
    finally:
        await api.aclose()


async def test_500_retried_for_get_not_post_and_429_waits(tmp_path: Path) -> None:
    from aiohttp import web

    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.method)
        if request.method == "GET" and seen.count("GET") == 1:
            return web.Response(status=429, headers={"Retry-After": "0"})
        if request.method == "GET" and seen.count("GET") == 2:
            return web.Response(status=500)
        if request.method == "GET":
            return web.json_response({"meta": {"next": None}, "objects": [{"id": 1}]})
        return web.Response(status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    deployment = make_deployment(1, tmp_path)
    api = HttpPexipApi(dataclasses.replace(deployment.pexip_api, url=f"http://127.0.0.1:{port}"), retry_delay_s=0.01)
    try:
        assert await api.list_objects("dns_server") == [{"id": 1}]
        assert seen == ["GET", "GET", "GET"]
        with pytest.raises(Unreachable):
            await api.create("dns_server", {"address": "192.0.2.1"})
        assert seen.count("POST") == 1  # never sent twice
    finally:
        await api.aclose()
        await runner.cleanup()
