"""The Management Node's REST API as a real HTTPS server on 127.0.0.1, over the in-process twin.

Every request is handed to :class:`~adapters.sim.pexip.SimPexipApi` over the same
:class:`~adapters.sim.world.SimWorld`, so the server and the twin cannot drift. What it adds is
the wire (``pexip-api.md``; Tastypie's shapes): paging (``limit`` default 20, ``offset``,
``meta`` with ``next``/``previous``/``total_count``), ``201`` with a ``Location`` header (for
worker_vm the bootstrap file verbatim as the body), the Manager's logins decided live from
``authentication/1/`` (:mod:`adapters.sim.servers._pexip_auth`: local admin and LDAP users by HTTP
Basic, client certificates by mutual TLS against ``client_ca_file``; ``401`` otherwise), ``503``
while the Manager is not installed, the twin's refusals as ``400`` bodies
``{"<resource>": {"<field>": ["<message>"]}}`` and ``404``; filters only on the fields a resource's
``/schema/`` declares (``400`` otherwise); embedded objects without ``resource_uri``; after each
wizard's reboot ``503`` for ``reboot_s``; ``GET /admin/login/`` (200 when up) for readiness; after the
security wizard, ``400`` for a Host header that is a bare IP address (host-header validation).

:attr:`PexipServer.requests` counts every request by ``(method, status)``: a rerun that sends
no write shows as no new POST/PATCH/DELETE there (a connection cut by a fault counts as status 0);
:attr:`PexipServer.ldap_binds` the LDAP binds its logins made (one per request of an LDAP identity, the
directory asked each time).

:attr:`PexipServer.faults` (for the tests) holds faults, each taken by the first request it matches:
``(method, path prefix, kind)``, kind ``"500"``, ``"429"`` (``Retry-After`` 0.05 s), ``"drop"`` (the
connection cut before the request is handled) or ``"drop_after"`` (handled, its effect kept, the
connection cut before the answer: a write whose outcome the client never learns). Those taken are
moved to :attr:`PexipServer.faults_fired`.

Example::

    async with PexipServer(world, deployment, directory, tmp_path / "pexip") as server:
        url, ca = server.url, server.cert_file
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from yarl import URL

from adapters.base import Directory
from adapters.sim import _pki as pki
from adapters.sim._pexip_login import Logins
from adapters.sim._pexip_schema import RESOURCES
from adapters.sim.pexip import SimPexipApi
from adapters.sim.servers._pexip_auth import login_refusal
from adapters.sim.world import CONSOLE, SimWorld
from config.errors import Rejected
from config.model import Deployment

__all__ = ["HOST", "PexipServer"]

HOST = "127.0.0.1"
_CONFIG = "/api/admin/configuration/v1/"
_STATUS = "/api/admin/status/v1/"
_PAGING = {"limit", "offset", "format", "order_by"}
_WRITES = ("POST", "PATCH", "DELETE", "PUT")
_LOGIN_PAGE = "/admin/login/"


class PexipServer:
    """The twin served over HTTPS with a self-signed certificate kept in ``directory``."""

    def __init__(
        self,
        world: SimWorld,
        deployment: Deployment,
        directory: Directory,
        state_dir: Path,
        *,
        client_ca_file: Path | None = None,
        reboot_s: float = 0.0,
        port: int = 0,
        rate: tuple[int, float] = (1000, 60.0),
    ):
        """Args:
        client_ca_file: the CA whose client certificates the Manager trusts (none: no certificate login).
        reboot_s: how long the Manager is down (``503``) after each wizard's reboot (pexip-api.md 7.10).
        port: the loopback port (0: any free one).
        rate: past that many requests in that many seconds, ``429`` with ``Retry-After`` (a Manager's limit).
        """
        self._api = SimPexipApi(world, deployment, directory)
        self._world = world
        self._deployment = deployment
        self._logins = Logins(world, deployment, directory, answer_when_down=True)
        self._client_ca = client_ca_file
        self._reboot_s = reboot_s
        self._port = port
        self._wizard: str | None = None  # the wizard state last seen: a change is a reboot
        self._down_until = 0.0
        self._rate = rate
        self._arrivals: deque[float] = deque()
        self._dir = state_dir
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.requests: Counter[tuple[str, int]] = Counter()
        self.faults: list[tuple[str, str, str]] = []
        self.faults_fired: list[tuple[str, str, str]] = []

    @property
    def cert_file(self) -> Path:
        return self._dir / "manager.crt"

    @property
    def ldap_binds(self) -> int:
        """How many LDAP binds the Manager made for logins: one per request an LDAP identity made (Basic or
        client certificate), as a Manager binds on each (pexip-api.md 7.5)."""
        return self._logins.binds

    def writes(self) -> int:
        """How many write requests (POST, PATCH, DELETE, PUT) arrived, whatever their answer."""
        return sum(n for (method, _), n in self.requests.items() if method in _WRITES)

    async def __aenter__(self) -> PexipServer:
        self._dir.mkdir(parents=True, exist_ok=True)
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self._port, ssl_context=self._context())
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"https://{HOST}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _context(self) -> ssl.SSLContext:
        key = self._dir / "manager.key"
        if not (self.cert_file.is_file() and key.is_file()):
            private = pki.new_key("ECDSAP256")
            sans: list[x509.GeneralName] = [
                x509.DNSName(self._deployment.management.fqdn),
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address(HOST)),
            ]
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
            issued = pki.issue_certificate(
                subject, private.public_key(), private, ca=False, sans=sans, usages=[ExtendedKeyUsageOID.SERVER_AUTH]
            )
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(pki.key_pem(private))
            self.cert_file.write_bytes(issued.public_bytes(Encoding.PEM))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, key)
        if self._client_ca is not None:  # asked for, not required: Basic logins present none
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(self._client_ca)
        return ctx

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            state = (self._world.get(CONSOLE, self._deployment.management.name) or {}).get("wizard_state")
            now = time.monotonic()
            while self._arrivals and now - self._arrivals[0] >= self._rate[1]:
                self._arrivals.popleft()
            self._arrivals.append(now)
            if len(self._arrivals) > self._rate[0]:
                wait = self._rate[1] - (now - self._arrivals[0])
                limited = _json(429, {"error": f"more than {self._rate[0]} requests in {self._rate[1]:g} s"})
                limited.headers["Retry-After"] = f"{max(wait, 0.01):.2f}"
                self.requests[(request.method, 429)] += 1
                return limited
            if state != self._wizard:
                if self._wizard is not None:  # a wizard ran since the last request: the Manager rebooted
                    self._down_until = now + self._reboot_s
                self._wizard = state
            up = state in ("installed", "secured") and now >= self._down_until
            refusal = await self._refusal(request) if up and request.path != _LOGIN_PAGE else None
            response: web.StreamResponse
            if not up:
                why = "is rebooting" if state in ("installed", "secured") else "is not installed yet"
                response = _json(503, {"error": f"the Management Node {why}"})
                response.headers["Retry-After"] = str(max(1, round(self._down_until - now)))
            elif state == "secured" and _bare_ip(request.host):  # "validation of host headers = YES"
                response = _json(400, {"error": f"Invalid HTTP_HOST header: {request.host!r}; use the Manager's FQDN"})
            elif request.path == _LOGIN_PAGE:  # readiness: the login page answers 200 (pexip-api.md 7.10)
                response = web.Response(status=200, text="<html><body>Pexip Infinity login</body></html>")
            elif refusal is not None:
                response = _json(401, {"error": refusal})
                response.headers["WWW-Authenticate"] = 'Basic realm="django-tastypie"'
            else:
                fault = self._fault(request) if up else None
                if fault in ("drop", "drop_after"):
                    if fault == "drop_after":
                        await handler(request)  # applied; the answer never leaves
                    self.requests[(request.method, 0)] += 1
                    if request.transport is not None:
                        request.transport.abort()
                    return web.Response(status=500)  # not sent: the connection is gone
                if fault in ("500", "429"):
                    response = _json(int(fault), {"error": f"injected {fault}"})
                    if fault == "429":
                        response.headers["Retry-After"] = "0.05"
                else:
                    response = await handler(request)
        except Rejected as exc:
            status = getattr(exc, "http_status", 400)
            response = _json(status, _error_body(request.path, exc))
        self.requests[(request.method, response.status)] += 1
        return response

    def _fault(self, request: web.Request) -> str | None:
        for fault in self.faults:
            method, prefix, kind = fault
            if request.method == method and request.path.startswith(prefix):
                self.faults.remove(fault)
                self.faults_fired.append(fault)
                return kind
        return None

    async def _refusal(self, request: web.Request) -> str | None:
        peer = request.transport.get_extra_info("ssl_object") if request.transport is not None else None
        return await login_refusal(
            self._logins, self._world, self._deployment, request.headers.get("Authorization", ""), peer
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path, method = request.path, request.method
        if path.startswith(_STATUS):
            resource = path[len(_STATUS) :].strip("/")
            if method != "GET" or "/" in resource:
                return _json(405 if method != "GET" else 404, {"error": "not supported"})
            return self._page(request, await self._api.status(resource, **_filters(request)))
        if not path.startswith(_CONFIG):
            return _json(404, {"error": f"{path} not found"})
        parts = path[len(_CONFIG) :].strip("/").split("/")
        resource = parts[0]
        if len(parts) == 1:
            if method == "GET":
                filters = _filters(request)
                spec = RESOURCES.get(resource)
                refused = sorted(f for f in filters if spec is not None and f.partition("__")[0] not in spec.filtering)
                if refused:  # Tastypie's InvalidFilterError
                    return _json(
                        400, {"error": f"The '{refused[0].partition('__')[0]}' field does not allow filtering."}
                    )
                found = await self._api.list_objects(resource, **filters)
                return self._page(request, [_bare(resource, o) for o in found])
            if method == "POST":
                created = await self._api.create(resource, await _body(request))
                response = web.Response(status=201, body=created.body)
                response.headers["Location"] = created.uri
                return response
            return _json(405, {"error": f"{method} not allowed on a list"})
        if len(parts) == 2 and parts[1] == "schema" and method == "GET":
            return _json(200, await self._api.get(f"{_CONFIG}{resource}/schema/"))
        if len(parts) != 2:
            return _json(404, {"error": f"{path} not found"})
        uri = f"{_CONFIG}{resource}/{parts[1]}/"
        if method == "GET":
            return _json(200, _bare(resource, await self._api.get(uri)))
        if method == "PATCH":
            await self._api.patch(uri, await _body(request))
            return web.Response(status=202)
        if method == "DELETE":
            await self._api.delete(uri)
            return web.Response(status=204)
        return _json(405, {"error": f"{method} not allowed (PATCH only)"})

    def _page(self, request: web.Request, objects: list[dict[str, Any]]) -> web.Response:
        try:
            limit = int(request.query.get("limit", "20"))
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return _json(400, {"error": "limit and offset must be integers"})
        if limit <= 0:
            limit = len(objects) or 1
        total = len(objects)

        def link(at: int) -> str:
            query = {k: v for k, v in request.query.items() if k not in ("limit", "offset")}
            query.update(limit=str(limit), offset=str(at))
            return str(request.rel_url.with_query(query))

        meta = {
            "limit": limit,
            "offset": offset,
            "total_count": total,
            "next": link(offset + limit) if offset + limit < total else None,
            "previous": link(max(0, offset - limit)) if offset > 0 else None,
        }
        return _json(200, {"meta": meta, "objects": objects[offset : offset + limit]})


def _bare_ip(host_header: str) -> bool:
    try:
        ipaddress.ip_address(URL(f"//{host_header}").host or "")
    except ValueError:
        return False
    return True


def _bare(resource: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Embedded foreign keys as a Manager may send them: without ``resource_uri`` (pexip-api.md 7.8)."""
    spec = RESOURCES.get(resource)
    if spec is None:
        return obj
    out = dict(obj)
    for name, field in spec.fields.items():
        if field.embed and isinstance(out.get(name), list):
            out[name] = [{k: v for k, v in e.items() if k != "resource_uri"} for e in out[name] if isinstance(e, dict)]
    return out


def _filters(request: web.Request) -> dict[str, Any]:
    return {k: v for k, v in request.query.items() if k not in _PAGING}


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise Rejected("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise Rejected("the body must be a JSON object")
    return body


def _error_body(path: str, exc: Rejected) -> dict[str, Any]:
    parts = path[len(_CONFIG) :].strip("/").split("/") if path.startswith(_CONFIG) else ["error"]
    fields: dict[str, list[str]] = {}
    for field, message in getattr(exc, "problems", [("", str(exc))]):
        fields.setdefault(field or "__all__", []).append(message)
    return {parts[0]: fields}


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")
