"""The real provisioning client over HTTPS: how it verifies a node, and what it makes of a bad answer.

The contract suite (``contract/test_provisioning_contract.py``) holds it to the twin's behaviour;
these tests cover what only the wire has: certificates, status codes, dropped connections.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from _sim_factory import deploy_vm, install_manager, make_deployment, make_systems, worker_vm_fields
from aiohttp import web

from adapters import Systems
from adapters.base import FirstUseTrust
from adapters.provisioning import HttpsProvisioning
from adapters.sim._faults import FaultPlan
from adapters.sim._manager import PROVISIONED
from adapters.sim.servers.provisioning_http import ProvisioningServers
from adapters.sim.world import VM, SimWorld
from config.errors import AdapterError, ConfigError, Rejected, Timeout, Unreachable
from config.model import Deployment, NodeSpec

BODY = b'{"node_config": {"name": "conf"}, "password_hash": "SECRET-HASH-9f2b"}'


@dataclass
class Lab:
    world: SimWorld
    deployment: Deployment  # pexip_api real, every Conferencing Node pinned to its server's certificate
    systems: Systems
    servers: ProvisioningServers

    @property
    def node(self) -> NodeSpec:
        return self.deployment.conferencing[0]

    def with_node(self, **changes: object) -> Deployment:
        """The deployment with the first Conferencing Node changed."""
        nodes = (dataclasses.replace(self.node, **changes), *self.deployment.conferencing[1:])  # type: ignore[arg-type]
        return dataclasses.replace(self.deployment, conferencing=nodes)

    def with_api(self, **changes: object) -> Deployment:
        return dataclasses.replace(self.deployment, pexip_api=dataclasses.replace(self.deployment.pexip_api, **changes))  # type: ignore[arg-type]


@pytest.fixture
async def lab(world: SimWorld, tmp_path: Path) -> AsyncIterator[Lab]:
    """The first Conferencing Node's VM runs and its HTTPS provisioning interface answers on 127.0.0.1."""
    deployment = make_deployment(3, tmp_path)
    systems = make_systems(world, deployment)
    await install_manager(systems, deployment)
    servers = ProvisioningServers(world, deployment, tmp_path / "provisioning", poll_s=3600)
    await servers.start()
    node = deployment.conferencing[0]
    location = await systems.pexip.create("system_location", {"name": node.location})
    await systems.pexip.create("worker_vm", worker_vm_fields(node, location.uri))
    await deploy_vm(systems, deployment, node)
    await servers.refresh()
    nodes = tuple(
        dataclasses.replace(n, provisioning_url=servers.url(n.name), provisioning_thumbprint=servers.thumbprint(n.name))
        for n in deployment.conferencing
    )
    real = dataclasses.replace(
        deployment, conferencing=nodes, pexip_api=dataclasses.replace(deployment.pexip_api, mode="real")
    )
    made = Lab(world, real, systems, servers)
    try:
        yield made
    finally:
        await made.servers.aclose()  # a test may have restarted it


async def _upload(deployment: Deployment, body: bytes = BODY) -> None:
    async with HttpsProvisioning(deployment, timeout_s=5) as client:
        await client.upload_bootstrap(deployment.conferencing[0], body)


async def test_the_upload_goes_over_https_to_the_nodes_own_port(lab: Lab) -> None:
    """A pinned upload reaches the node's server (one POST, 200) and the node keeps the file's digest."""
    await _upload(lab.deployment)
    assert lab.servers.requests[(lab.node.name, "POST", 200)] == 1
    assert lab.world.get(PROVISIONED, lab.node.name) is not None
    assert lab.servers.listening(lab.node.name) and not lab.servers.listening(lab.deployment.conferencing[1].name)


async def test_a_wrong_pin_sends_nothing(lab: Lab) -> None:
    """A certificate other than the pinned one is Rejected naming the setting, before the file is sent."""
    wrong = "sha256:" + ":".join(["AB"] * 32)
    with pytest.raises(Rejected, match=r"conferencing\[0\]\.provisioning_thumbprint") as caught:
        await _upload(lab.with_node(provisioning_thumbprint=wrong))
    assert lab.servers.thumbprint(lab.node.name) in str(caught.value)  # what it presents, to compare
    assert not caught.value.retryable
    assert lab.world.get(PROVISIONED, lab.node.name) is None
    assert not any(method == "POST" for _, method, _ in lab.servers.requests)


async def test_a_ca_file_verifies_the_chain(lab: Lab) -> None:
    """With provisioning_ca_file the node's certificate must chain to it; another CA is Rejected, nothing sent."""
    other = str(lab.servers.cert_file(lab.deployment.conferencing[1].name))
    with pytest.raises(Rejected, match="provisioning_ca_file"):
        await _upload(
            dataclasses.replace(
                lab.with_node(provisioning_thumbprint=None),
                pexip_api=lab.with_api(provisioning_ca_file=other).pexip_api,
            )
        )
    assert lab.world.get(PROVISIONED, lab.node.name) is None
    own = str(lab.servers.cert_file(lab.node.name))
    await _upload(
        dataclasses.replace(
            lab.with_node(provisioning_thumbprint=None), pexip_api=lab.with_api(provisioning_ca_file=own).pexip_api
        )
    )
    assert lab.world.get(PROVISIONED, lab.node.name) is not None


async def test_trust_on_first_use_logs_the_fingerprint(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    """Only when asked for, the first certificate is trusted; its fingerprint is logged at WARNING to be pinned."""
    unpinned = lab.with_node(provisioning_thumbprint=None)
    with pytest.raises(ConfigError, match=r"conferencing\[0\]\.provisioning_thumbprint"):
        HttpsProvisioning(unpinned)  # no way to verify: refused before anything is sent
    caplog.set_level(logging.INFO)
    await _upload(dataclasses.replace(unpinned, pexip_api=lab.with_api(provisioning_trust_first_use=True).pexip_api))
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert lab.servers.thumbprint(lab.node.name) in warning.getMessage()
    assert b"SECRET-HASH" not in caplog.text.encode()


async def test_a_certificate_trusted_on_first_use_is_reported_once_and_a_journaled_one_is_pinned(lab: Lab) -> None:
    """The first-use certificate is reported for the journal once (system, URL, fingerprint); a client handed a
    journaled fingerprint that is not the node's refuses the upload before the file is sent."""
    tofu = dataclasses.replace(
        lab.with_node(provisioning_thumbprint=None),
        pexip_api=lab.with_api(provisioning_trust_first_use=True).pexip_api,
    )
    node, url = tofu.conferencing[0], lab.servers.url(lab.node.name)
    async with HttpsProvisioning(tofu, timeout_s=5) as client:
        await client.upload_bootstrap(node, BODY)
        assert client.first_use_trusts() == [FirstUseTrust("provisioning", url, lab.servers.thumbprint(lab.node.name))]
        assert client.first_use_trusts() == []
    posts = sum(n for (_, method, _), n in lab.servers.requests.items() if method == "POST")
    async with HttpsProvisioning(tofu, timeout_s=5) as later:
        later.pin_first_use([FirstUseTrust("provisioning", url, "sha256:" + ":".join(["AB"] * 32))])
        with pytest.raises(Rejected, match="journaled by an earlier run"):
            await later.upload_bootstrap(node, BODY)
        assert later.first_use_trusts() == []
    assert sum(n for (_, method, _), n in lab.servers.requests.items() if method == "POST") == posts


async def test_a_transient_fault_is_retryable(lab: Lab) -> None:
    """A 503 (the node busy: a fault injected in the world) is Unreachable, retryable; then the upload succeeds."""
    lab.world.faults = FaultPlan(transient=1.0)
    with pytest.raises(Unreachable, match="503") as caught:
        await _upload(lab.deployment)
    assert caught.value.retryable
    lab.world.faults = FaultPlan()
    await _upload(lab.deployment)
    assert lab.world.get(PROVISIONED, lab.node.name) is not None


async def test_a_stopped_node_refuses_connections_again(lab: Lab) -> None:
    """Once its VM is off the node's port refuses connections (Unreachable) and stays reserved for it."""
    vm = dict(lab.world.get(VM, lab.node.name))  # the twin has no power-off: set the world as vSphere would
    await lab.world.apply([(VM, lab.node.name, {**vm, "power_state": "poweredOff"})])
    await lab.servers.refresh()
    with pytest.raises(Unreachable, match="does not answer"):
        await _upload(lab.deployment)
    assert lab.servers.url(lab.node.name) == lab.deployment.conferencing[0].provisioning_url


# --- a misbehaving server: what the client makes of answers the simulator never gives --------


@pytest.fixture
async def odd_server(lab: Lab) -> AsyncIterator[str]:
    """An HTTPS server with the node's certificate that drops, echoes or stalls; its base URL."""

    async def drop(request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        request.transport.close()  # dropped mid-request, no answer
        return web.Response()

    async def echo(request: web.Request) -> web.Response:
        return web.Response(status=400, text=f"bad file: {(await request.read()).decode(errors='replace')}")

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such page")

    app = web.Application()
    app.router.add_post("/drop", drop)
    app.router.add_post("/echo", echo)
    app.router.add_post("/gone", gone)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    name = lab.node.name
    ctx.load_cert_chain(lab.servers.cert_file(name), lab.servers.cert_file(name).with_suffix(".key"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # the port the OS chose
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "error", "retryable", "match"),
    [
        ("/drop", Unreachable, True, "connection failed"),  # dropped mid-request: the same file again is safe
        ("/echo", Rejected, False, "withheld"),  # a 400 that repeats the file: the answer is not quoted
        ("/gone", Rejected, False, "404: no such page"),  # any other refusal, quoted
    ],
)
async def test_odd_answers(
    lab: Lab, odd_server: str, path: str, error: type[AdapterError], retryable: bool, match: str
) -> None:
    """Each odd answer becomes our error, retryable only where trying again can help, the file never quoted."""
    with pytest.raises(error, match=match) as caught:
        await _upload(lab.with_node(provisioning_url=odd_server + path))
    assert caught.value.retryable is retryable
    assert "SECRET-HASH" not in str(caught.value)


async def test_no_answer_in_time_is_a_timeout(lab: Lab) -> None:
    """A node that accepts the connection but never answers the handshake is a Timeout, retryable."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # until the client gives up and closes
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        silent_node = lab.with_node(provisioning_url=f"https://127.0.0.1:{port}/")
        async with HttpsProvisioning(silent_node, timeout_s=0.3) as client:
            with pytest.raises(Timeout) as caught:
                await client.upload_bootstrap(silent_node.conferencing[0], BODY)
        assert caught.value.retryable
    finally:
        server.close()
        await server.wait_closed()


async def test_the_server_takes_only_the_form(lab: Lab) -> None:
    """The simulator serves the upload form, refuses a body that is not multipart/form-data (415) or too big (413)."""
    pin = aiohttp.Fingerprint(bytes.fromhex(lab.servers.thumbprint(lab.node.name)[7:].replace(":", "")))
    url = lab.servers.url(lab.node.name)
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=pin) as form:
            assert form.status == 200 and 'name="file"' in await form.text()
        async with session.post(url, data=BODY, ssl=pin) as raw:
            assert raw.status == 415
        big = aiohttp.FormData()
        big.add_field("file", io.BytesIO(b"x" * (2 << 20)), filename="big.bootstrap")
        async with session.post(url, data=big, ssl=pin) as too_big:
            assert too_big.status == 413
    assert lab.world.get(PROVISIONED, lab.node.name) is None


async def test_a_restarted_server_keeps_each_nodes_certificate_and_port(lab: Lab, tmp_path: Path) -> None:
    """The simulator restarted on the same directory and ports presents the same certificates (pins stay valid)."""
    name = lab.node.name
    before, port = lab.servers.thumbprint(name), int(lab.servers.url(name).rsplit(":", 1)[1].rstrip("/"))
    await lab.servers.aclose()
    again = ProvisioningServers(lab.world, lab.deployment, tmp_path / "provisioning", ports={name: port}, poll_s=3600)
    lab.servers = again  # the fixture closes this one
    await again.start()
    assert (again.thumbprint(name), again.url(name)) == (before, lab.node.provisioning_url)
    await _upload(lab.deployment)
    assert lab.world.get(PROVISIONED, lab.node.name) is not None
