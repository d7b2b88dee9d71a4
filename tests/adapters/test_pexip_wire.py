"""The lab's Management API server keeps a Manager's wire quirks, and HttpPexipApi copes with them."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ssl
from pathlib import Path

import aiohttp
import pytest
from _sim_factory import install_manager, make_deployment, make_systems, served_manager

from adapters.pexip import HttpPexipApi
from adapters.pexip._tls import fingerprint_of
from adapters.sim import SimWorld
from adapters.sim.servers.pexip_http import PexipServer
from adapters.sim.world import CONSOLE
from config.errors import AdapterError, NotYet, Rejected

CONFIG = "/api/admin/configuration/v1/"


async def test_undeclared_filters_are_refused_on_the_wire_and_applied_by_the_client(
    world: SimWorld, tmp_path: Path
) -> None:
    """role?name= is a 400 from the server (not in its schema's filtering), yet the client's filtered list
    equals the twin's; embedded permissions arrive without resource_uri and come back with it."""
    async with served_manager(world, tmp_path) as (deployment, systems, server, spec):
        assert deployment.pexip_api.admin_password is not None
        token = base64.b64encode(f"admin:{deployment.pexip_api.admin_password.reveal()}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
        ctx = ssl.create_default_context(cafile=str(server.cert_file))
        async with aiohttp.ClientSession(base_url=server.url, connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            async with http.get(f"{CONFIG}role/", params={"name": "Read-only"}, headers=headers) as r:
                assert r.status == 400 and "does not allow filtering" in (await r.json())["error"]
            async with http.get(f"{CONFIG}dns_server/", params={"address": "192.0.2.1"}, headers=headers) as r:
                assert r.status == 200  # declared
            async with http.get(f"{CONFIG}role/", headers=headers) as r:
                roles = (await r.json())["objects"]
            assert roles and all("resource_uri" not in p for role in roles for p in role["permissions"])
        api = HttpPexipApi(spec, retry_delay_s=0.01)
        try:
            over_http = await api.list_objects("role", name="Read-only")
            assert over_http == await systems.pexip.list_objects("role", name="Read-only")
            assert [r["name"] for r in over_http] == ["Read-only"]
            assert all(p["resource_uri"].startswith(CONFIG + "permission/") for p in over_http[0]["permissions"])
            assert await api.get(over_http[0]["resource_uri"]) == over_http[0]
            assert await api.list_objects("role", name__startswith="Read") == await systems.pexip.list_objects(
                "role", name__startswith="Read"
            )
        finally:
            await api.aclose()


async def test_after_a_wizard_the_manager_is_down_for_its_reboot_window(world: SimWorld, tmp_path: Path) -> None:
    """Once the security wizard ran, requests get 503 (NotYet, retryable) and /admin/login/ 503 for
    reboot_s; then both answer again."""
    # The two 503s must come within reboot_s of the first request after the wizard (a loaded machine's two HTTPS
    # round trips can outlast 0.3 s: 1 s, not more, to keep the test short); the end of the window is waited
    # for, not slept for, and bounded below only (the monotonic clock never runs short).
    reboot_s = 1.0
    deployment = make_deployment(1, tmp_path)
    systems = make_systems(world, deployment)
    await install_manager(systems, deployment)
    async with PexipServer(world, deployment, systems.directory, tmp_path / "pexip", reboot_s=reboot_s) as server:
        fqdn, port = deployment.management.fqdn, server.url.rsplit(":", 1)[1]
        spec = dataclasses.replace(
            deployment.pexip_api, url=f"https://{fqdn}:{port}", address="127.0.0.1", ca_file=str(server.cert_file)
        )
        api = HttpPexipApi(spec, retry_delay_s=0.01)
        ctx = ssl.create_default_context(cafile=str(server.cert_file))
        ctx.check_hostname = False  # reached by IP, named by the Host header below
        try:
            async with aiohttp.ClientSession(
                base_url=server.url, connector=aiohttp.TCPConnector(ssl=ctx), headers={"Host": fqdn}
            ) as http:
                await api.get(CONFIG + "global/1/")
                name = deployment.management.name
                await world.apply([(CONSOLE, name, {**world.get(CONSOLE, name), "wizard_state": "secured"})])
                asked = asyncio.get_running_loop().time()  # before the request that starts the window
                with pytest.raises(NotYet, match="503"):
                    await api.get(CONFIG + "global/1/")
                async with http.get("/admin/login/") as r:
                    assert r.status == 503 and int(r.headers["Retry-After"]) >= 1
                while True:
                    async with http.get("/admin/login/") as r:
                        if r.status == 200:
                            break
                        assert r.status == 503
                    assert asyncio.get_running_loop().time() - asked < 60, "still down"  # a bound on a hang
                    await asyncio.sleep(0.05)
                assert asyncio.get_running_loop().time() - asked >= reboot_s  # down for the whole window
                assert (await api.get(CONFIG + "global/1/"))["resource_uri"] == CONFIG + "global/1/"
        finally:
            await api.aclose()


async def test_the_managers_self_signed_certificate_is_pinned_by_its_fingerprint(
    world: SimWorld, tmp_path: Path
) -> None:
    """pexip_api.tls_fingerprint alone lets the client in; a wrong pin without ca_file is Rejected naming
    both fingerprints before any credential is sent; a wrong pin with the right ca_file falls back to the CA."""
    deployment = make_deployment(1, tmp_path)
    systems = make_systems(world, deployment)
    await install_manager(systems, deployment)
    async with PexipServer(world, deployment, systems.directory, tmp_path / "pexip") as server:
        pin = fingerprint_of(ssl.PEM_cert_to_DER_cert(server.cert_file.read_text()))
        wrong = "sha256:" + ":".join(["AB"] * 32)
        cases = [
            (dataclasses.replace(deployment.pexip_api, url=server.url, tls_fingerprint=pin), None),
            (dataclasses.replace(deployment.pexip_api, url=server.url, tls_fingerprint=wrong), pin),
            (
                dataclasses.replace(
                    deployment.pexip_api, url=server.url, tls_fingerprint=wrong, ca_file=str(server.cert_file)
                ),
                None,
            ),
        ]
        for spec, refused_because in cases:
            api = HttpPexipApi(spec, retry_delay_s=0.01)
            try:
                before = sum(server.requests.values())
                if refused_because is None:
                    assert (await api.get(CONFIG + "global/1/"))["resource_uri"] == CONFIG + "global/1/"
                else:
                    with pytest.raises(Rejected, match="tls_fingerprint") as caught:
                        await api.get(CONFIG + "global/1/")
                    assert refused_because in str(caught.value) and wrong in str(caught.value)
                    assert sum(server.requests.values()) == before  # nothing was sent
            finally:
                await api.aclose()


async def test_past_its_rate_the_server_answers_429_and_the_client_stays_within_it(
    world: SimWorld, tmp_path: Path
) -> None:
    """Past `rate` requests in its window the server answers 429 with Retry-After; a client held to a budget
    within it is never refused, it waits instead."""
    deployment = make_deployment(1, tmp_path)
    systems = make_systems(world, deployment)
    await install_manager(systems, deployment)
    # The raw client's five requests must fall in one window: 0.3 s is one a loaded machine's five HTTPS round
    # trips can outlast (then no 429), a minute is not.
    long = (4, 60.0)
    async with PexipServer(world, deployment, systems.directory, tmp_path / "pexip-raw", rate=long) as server:
        ctx = ssl.create_default_context(cafile=str(server.cert_file))
        async with aiohttp.ClientSession(base_url=server.url, connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            answers = []
            for _ in range(5):
                async with http.get("/admin/login/") as r:
                    answers.append((r.status, r.headers.get("Retry-After")))
            assert [a for a, _ in answers] == [200, 200, 200, 200, 429]
            assert 0 < float(answers[-1][1] or 0) <= long[1]
    # The client's part holds however slow the machine: its requests go one after another, each arriving before
    # the next is sent, so five arrivals within a window would need four sends within it, one over its budget.
    rate = (4, 0.3)
    async with PexipServer(world, deployment, systems.directory, tmp_path / "pexip", rate=rate) as server:
        spec = dataclasses.replace(deployment.pexip_api, url=server.url, ca_file=str(server.cert_file))
        # One request under the server's limit: the client stamps a request when it sends it, the server when
        # it arrives, a little later; a client at exactly the limit would now and then be one over.
        api = HttpPexipApi(spec, retry_delay_s=0.01, rate=(rate[0] - 1, rate[1]))
        try:
            started = asyncio.get_running_loop().time()
            for _ in range(6):
                await api.get(CONFIG + "global/1/")
            assert asyncio.get_running_loop().time() - started >= rate[1] * 0.9
            assert server.requests[("GET", 429)] == 0  # never refused: it waited instead
        finally:
            await api.aclose()


async def test_once_secured_the_manager_is_reached_by_name_at_its_configured_address(
    world: SimWorld, tmp_path: Path
) -> None:
    """After the security wizard a bare-IP Host header is refused (400); a client with the FQDN URL and the
    address 127.0.0.1 gets in, and resolves no other name."""
    deployment = make_deployment(1, tmp_path)
    systems = make_systems(world, deployment)
    await install_manager(systems, deployment)
    async with PexipServer(world, deployment, systems.directory, tmp_path / "pexip") as server:
        name = deployment.management.name
        await world.apply([(CONSOLE, name, {**world.get(CONSOLE, name), "wizard_state": "secured"})])
        by_ip = dataclasses.replace(deployment.pexip_api, url=server.url, ca_file=str(server.cert_file))
        port = server.url.rsplit(":", 1)[1]
        by_name = dataclasses.replace(by_ip, url=f"https://{deployment.management.fqdn}:{port}", address="127.0.0.1")
        for spec, works in ((by_ip, False), (by_name, True)):
            api = HttpPexipApi(spec, retry_delay_s=0.01)
            try:
                if works:
                    assert (await api.get(CONFIG + "global/1/"))["resource_uri"] == CONFIG + "global/1/"
                    with pytest.raises(AdapterError):
                        await api.get("https://elsewhere.example.com/api/admin/configuration/v1/global/1/")
                else:
                    with pytest.raises(Rejected, match="HTTP_HOST"):
                        await api.get(CONFIG + "global/1/")
            finally:
                await api.aclose()


async def test_a_schema_is_read_once_however_many_lists_ask_for_it_at_once(world: SimWorld, tmp_path: Path) -> None:
    """Ten filtered lists of one resource at once (as many nodes' steps at a run's start): one schema GET."""
    async with served_manager(world, tmp_path) as (_, _, _, spec):
        api = HttpPexipApi(spec, retry_delay_s=0.01)
        sent: list[str] = []
        request = api._request

        async def recording(method: str, uri: str, *args: object, **kwargs: object) -> object:
            sent.append(f"{method} {uri}")
            return await request(method, uri, *args, **kwargs)  # type: ignore[arg-type]

        api._request = recording  # type: ignore[method-assign]
        try:
            found = await asyncio.gather(*(api.list_objects("dns_server", address="192.0.2.1") for _ in range(10)))
            assert all(f == found[0] for f in found)
            assert sent.count(f"GET {CONFIG}dns_server/schema/") == 1, sent
        finally:
            await api.aclose()
