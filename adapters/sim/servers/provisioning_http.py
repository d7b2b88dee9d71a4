"""Each Conferencing Node's provisioning interface as a real HTTPS server on 127.0.0.1.

A Conferencing Node deployed from the generic OVA (``MANUAL-PROVISION-ONLY``) boots into a
provisioning interface on tcp/8443 and waits for its bootstrap file (``pexip-api.md`` 7.3).
Here every Conferencing Node of the deployment gets its own loopback port, over the same
:class:`~adapters.sim.world.SimWorld` as the twin: an upload is handed to
:class:`~adapters.sim.provisioning.SimProvisioning`, so the server and the twin cannot drift
(the same file again is a replay and accepted, another file refused, the Manager's status
says SYNCED only once the node took the file its worker_vm was issued).

What the wire looks like is an ASSUMPTION. No public source (Pexip's Go SDK, its Terraform
provider, pexshell, the quick-deploy kit, the docs pages stored here) shows a request to the
interface: the documented way is a person with a browser uploading the file through a form.
So the server takes what such a form sends, and nothing else:

* ``POST /`` (:data:`UPLOAD_PATH`), ``multipart/form-data`` with the file in the part named
  ``file`` (:data:`UPLOAD_FIELD`); any other content type is 415, a missing part 400;
* ``200`` with ``{"status": "accepted"}`` when the node takes the file (or already has that
  very file), ``409`` when it already took another one (its VM must be redeployed),
  ``400`` for an empty file, ``413`` over :data:`MAX_FILE_BYTES`, ``503`` when the world
  injects a transient fault;
* ``GET /``: the upload form.

Change :data:`UPLOAD_PATH`, :data:`UPLOAD_FIELD` and the client
(:mod:`adapters.provisioning`) together once a real node shows otherwise.

The port of a node accepts connections only while its VM is powered on (a watcher reads the
world every ``poll_s``); before, it is bound but not listening, so a client gets "connection
refused", as from a VM that has not booted. Each node presents its own self-signed
certificate (as a freshly deployed node does; the guide), kept with its key in ``directory``
so that a restarted lab keeps the certificates the configuration pins.

Example::

    servers = ProvisioningServers(world, deployment, tmp_path / "prov")
    async with servers:
        url, pin = servers.url("conf-1"), servers.thumbprint("conf-1")
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import socket
import ssl
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.sim import _pki as pki
from adapters.sim.provisioning import SimProvisioning
from adapters.sim.world import VM, SimWorld
from config.errors import Rejected, Unreachable
from config.model import Deployment, NodeSpec

__all__ = ["ProvisioningServers", "UPLOAD_PATH", "UPLOAD_FIELD", "MAX_FILE_BYTES"]

UPLOAD_PATH = "/"
UPLOAD_FIELD = "file"
MAX_FILE_BYTES = 1 << 20  # a bootstrap file is a few kB of JSON or XML
HOST = "127.0.0.1"

_log = logging.getLogger(__name__)
_NODE: web.AppKey[NodeSpec] = web.AppKey("node", NodeSpec)
_FORM = (
    "<!doctype html><title>Pexip Conferencing Node provisioning</title>"
    '<form method="post" action="/" enctype="multipart/form-data">'
    '<input type="file" name="file"><button type="submit">Upload</button></form>'
)


def _json(code: int, **fields: str) -> web.Response:
    return web.Response(status=code, text=json.dumps(fields), content_type="application/json")


class ProvisioningServers:
    """One HTTPS provisioning listener per Conferencing Node of ``deployment``, over ``world``.

    Args:
        world: the simulated world the twins use (VM power state, what each node took).
        deployment: its Conferencing Nodes get a listener each.
        directory: where each node's self-signed certificate and key are kept (made once).
        ports: a fixed port per node name (the lab's configuration names them); the others
            get a free port at :meth:`start`.
        poll_s: how often the power state of the VMs is read.
    """

    def __init__(
        self,
        world: SimWorld,
        deployment: Deployment,
        directory: Path,
        *,
        ports: Mapping[str, int] | None = None,
        poll_s: float = 0.05,
    ):
        self._world = world
        self._twin = SimProvisioning(world, deployment)
        self._nodes = {n.name: n for n in deployment.conferencing}
        self._directory = Path(directory)
        self._wanted_ports = dict(ports or {})
        self._poll_s = poll_s
        self._ports: dict[str, int] = {}
        self._reserved: dict[str, socket.socket] = {}  # bound, not listening: "connection refused"
        self._runners: dict[str, web.AppRunner] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._watcher: asyncio.Task[None] | None = None
        # (node, method, status) of every request answered: what the tests and benchmarks count.
        self.requests: Counter[tuple[str, str, int]] = Counter()

    # --- what a client needs to know -----------------------------------------------------

    def url(self, node: str) -> str:
        """The node's provisioning interface, ``https://127.0.0.1:<port>/``."""
        return f"https://{HOST}:{self._ports[node]}{UPLOAD_PATH}"

    def cert_file(self, node: str) -> Path:
        return self._directory / f"{node}.pem"

    def thumbprint(self, node: str) -> str:
        """``sha256:AA:BB:...`` of the node's certificate: what ``provisioning_thumbprint`` pins."""
        der = x509.load_pem_x509_certificate(self.cert_file(node).read_bytes()).public_bytes(Encoding.DER)
        digest = hashlib.sha256(der).hexdigest().upper()
        return "sha256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    def listening(self, node: str) -> bool:
        return node in self._runners

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Make the certificates, reserve every port, listen for the nodes whose VM runs."""
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, node in self._nodes.items():
            self._contexts[name] = self._context(node)
            self._reserve(name, self._wanted_ports.get(name, 0))
        await self.refresh()
        self._watcher = asyncio.create_task(self._watch(), name="provisioning-servers")

    async def refresh(self) -> None:
        """Listen on the port of each node whose VM is powered on; stop the others."""
        for name in self._nodes:
            vm = self._world.get(VM, name)
            running = vm is not None and vm.get("power_state") == "poweredOn"
            if running and name not in self._runners:
                await self._listen(name)
            elif not running and name in self._runners:
                await self._stop(name)

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for name in list(self._runners):
            await self._runners.pop(name).cleanup()
        for sock in self._reserved.values():
            sock.close()
        self._reserved.clear()

    async def __aenter__(self) -> ProvisioningServers:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- internals -------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.refresh()
            except OSError:  # a port taken meanwhile: say so, keep serving the others
                _log.exception("provisioning servers: cannot listen")

    def _reserve(self, name: str, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        self._reserved[name] = sock
        self._ports[name] = sock.getsockname()[1]

    async def _listen(self, name: str) -> None:
        sock = self._reserved.pop(name)
        sock.listen(128)
        app = web.Application(client_max_size=MAX_FILE_BYTES + 64 * 1024)
        app[_NODE] = self._nodes[name]
        app.router.add_get(UPLOAD_PATH, self._form)
        app.router.add_post(UPLOAD_PATH, self._upload)
        runner = web.AppRunner(app, access_log=None)  # an access log line is all a log would get
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=self._contexts[name]).start()
        self._runners[name] = runner

    async def _stop(self, name: str) -> None:
        await self._runners.pop(name).cleanup()  # closes the listening socket
        self._reserve(name, self._ports[name])  # the VM is off: the port refuses again

    def _context(self, node: NodeSpec) -> ssl.SSLContext:
        cert, key = self.cert_file(node.name), self._directory / f"{node.name}.key"
        if not (cert.is_file() and key.is_file()):
            self._make_certificate(node, cert, key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        return ctx

    @staticmethod
    def _make_certificate(node: NodeSpec, cert: Path, key: Path) -> None:
        """The node's own self-signed certificate, for its FQDN, its address and 127.0.0.1."""
        private = pki.new_key("ECDSAP256")
        sans: list[x509.GeneralName] = [x509.DNSName(node.fqdn), x509.IPAddress(ipaddress.ip_address(HOST))]
        with contextlib.suppress(ValueError):
            if node.address != HOST:
                sans.append(x509.IPAddress(ipaddress.ip_address(node.address)))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node.fqdn)])
        issued = pki.issue_certificate(
            subject, private.public_key(), private, ca=False, sans=sans, usages=[ExtendedKeyUsageOID.SERVER_AUTH]
        )
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pki.key_pem(private))
        cert.write_bytes(issued.public_bytes(Encoding.PEM))

    async def _form(self, request: web.Request) -> web.Response:
        self.requests[(request.app[_NODE].name, "GET", 200)] += 1
        return web.Response(text=_FORM, content_type="text/html")

    async def _upload(self, request: web.Request) -> web.Response:
        node = request.app[_NODE]
        response = await self._take(node, request)
        self.requests[(node.name, "POST", response.status)] += 1
        return response

    async def _take(self, node: NodeSpec, request: web.Request) -> web.Response:
        if request.content_type != "multipart/form-data":
            return _json(415, error=f"send the bootstrap file as multipart/form-data, part {UPLOAD_FIELD!r}")
        if (request.content_length or 0) > MAX_FILE_BYTES + 64 * 1024:  # refused before it is read
            return _json(413, error=f"the file is larger than {MAX_FILE_BYTES} bytes")
        body: bytes | None = None
        try:
            async for part in await request.multipart():
                if getattr(part, "name", None) == UPLOAD_FIELD:
                    body = await part.read()  # type: ignore[union-attr]  # a BodyPartReader: it has a name
        except web.HTTPRequestEntityTooLarge:
            return _json(413, error=f"the file is larger than {MAX_FILE_BYTES} bytes")
        if body is None:
            return _json(400, error=f"no part named {UPLOAD_FIELD!r} in the form")
        if len(body) > MAX_FILE_BYTES:
            return _json(413, error=f"the file is larger than {MAX_FILE_BYTES} bytes")
        try:
            await self._twin.upload_bootstrap(node, body)
        except Unreachable as exc:  # a transient fault the world injected (its VM runs: we listen)
            return _json(503, error=str(exc))
        except Rejected as exc:  # the twin's messages name digests, never the file
            return _json(409 if body else 400, error=str(exc))
        return _json(200, status="accepted")
