"""The Management Node's REST API over HTTPS (aiohttp): TLS always verified, HTTP Basic, paging by
``meta.next``, Tastypie 400 bodies turned into field messages, idempotent verbs retried.

Who it is (pexip-api.md 7.5): the web administrator by HTTP Basic until a certificate login has
been proven; from then on (``verify_login(use_client_cert=True)`` succeeded, or a Basic request
was refused while ``pexip_api.client_cert`` is configured and the certificate is accepted) the
orchestrator's client certificate over mutual TLS and no Authorization header.

Where it connects: ``pexip_api.url`` names the Manager by its FQDN (TLS server name and Host
header); the connection goes to ``pexip_api.address`` (default ``management.address``). Trust: see
:mod:`adapters.pexip._tls` (``ca_file``, or the pinned self-signed certificate).

Errors: a 4xx is :class:`~config.errors.Rejected` naming the fields and messages the API gave;
a connection error or a 5xx is :class:`~config.errors.Unreachable` (retryable), a 503 (starting,
rebooting) :class:`~config.errors.NotYet`; 429 waits for ``Retry-After`` and tries again. Only GET,
PATCH and DELETE are retried: a POST that may have been applied is never sent twice. At most 5
requests are in flight and 1,000 a minute. Neither a password nor a worker_vm body is ever logged
or put in an exception.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import ssl
from typing import Any, Literal

import aiohttp
from yarl import URL

from adapters.base import Created, FirstUseTrust
from adapters.pexip._shapes import RequestBudget, matches, normalise, server_filters
from adapters.pexip._tls import (
    AddressResolver,
    client_context,
    fingerprint_of,
    pinned_certificate,
    presented_certificate,
)
from config.errors import NotYet, Rejected, Unreachable
from config.model import LdapSpec, PexipApiSpec

__all__ = ["HttpPexipApi"]

log = logging.getLogger(__name__)

_SYSTEM = "pexip_api"
_CONFIG = "/api/admin/configuration/v1/"
_STATUS = "/api/admin/status/v1/"
_IDEMPOTENT = {"GET", "PATCH", "DELETE"}
_ATTEMPTS = 3
_IN_FLIGHT = 5
_RATE = (1000, 60.0)  # requests per window (s): a Management Node's limit (pexip-api.md 1: Rate limits)
_PROBE = _CONFIG + "global/1/"  # a login is proven by a GET that answers 200 (pexip-api.md 7.5)

Identity = Literal["admin", "ldap", "cert"]


class HttpPexipApi:
    """:class:`adapters.base.PexipApi` against a real Management Node (or the lab's server).

    Args:
        spec: the ``[pexip_api]`` section (URL, CA, web administrator, client certificate).
        ldap: the ``[ldap]`` section: ``verify_user``/``verify_password`` is the LDAP login that
            :meth:`verify_login` proves (none: only the local admin and the certificate can be).
    """

    def __init__(
        self,
        spec: PexipApiSpec,
        *,
        ldap: LdapSpec | None = None,
        address: str | None = None,
        retry_delay_s: float = 0.5,
        rate: tuple[int, float] = _RATE,
    ):
        """``address``: where the Manager is reached when ``spec.address`` does not say (the wiring gives
        ``management.address``); unused when the URL's host is an IP address. ``rate``: at most that many
        requests in any window of that many seconds (default 1,000 a minute)."""
        if spec.admin_password is None:
            raise Rejected("pexip_api.admin_password is not set", system="pexip")
        self._spec, self._ldap = spec, ldap
        self._base = spec.url.rstrip("/")
        host = URL(spec.url).host or ""
        self._address = None if _is_ip(host) else (spec.address or address)
        self._identity: Identity = "admin"
        self._sessions: dict[bool, aiohttp.ClientSession] = {}  # by "presents the client certificate"
        self._slots = asyncio.Semaphore(_IN_FLIGHT)
        self._delay = retry_delay_s
        self._budget = RequestBudget(*rate)
        self._schemas: dict[str, dict[str, Any] | None] = {}
        self._schema_reads: dict[str, asyncio.Lock] = {}  # one read of a schema however many ask at once
        self._pinned: str | None = None  # the pinned certificate's PEM ("" no longer the one presented)
        self._first_use_pin: str | None = None  # trusted on first use (this run, or an earlier one's journal)
        self._first_use_trusts: list[FirstUseTrust] = []  # not yet reported

    def __repr__(self) -> str:
        return f"HttpPexipApi({self._base!r})"

    # --- the Protocol ------------------------------------------------------------------------

    async def list_objects(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        """Filters the server declares go on the wire, the rest are applied here; all are re-checked."""
        schema = await self._schema(resource) if set(filters) - {"id"} else None
        found = await self._all(f"{_CONFIG}{resource}/", server_filters(schema, filters))
        return [normalise(o) for o in found if matches(o, filters)]

    async def get(self, uri: str) -> dict[str, Any]:
        schema_of = (
            uri[len(_CONFIG) : -len("/schema/")] if uri.startswith(_CONFIG) and uri.endswith("/schema/") else None
        )
        cached = self._schemas.get(schema_of) if schema_of is not None else None
        if cached is not None:
            return cached  # a schema is read once per client
        _, body = await self._request("GET", uri)
        result: dict[str, Any] = json.loads(body)
        if schema_of is not None:
            self._schemas[schema_of] = result
            return result
        return normalise(result) if not uri.endswith("/schema/") else result

    async def create(self, resource: str, fields: dict[str, Any]) -> Created:
        headers, body = await self._request("POST", f"{_CONFIG}{resource}/", fields)
        location = headers.get("Location", "")
        if not location:
            raise Rejected(f"POST {resource}/ answered without a Location header", system="pexip")
        uri = URL(location).path
        return Created(uri=uri, body=body if resource == "worker_vm" else b"")

    async def patch(self, uri: str, fields: dict[str, Any]) -> None:
        await self._request("PATCH", uri, fields)

    async def delete(self, uri: str) -> None:
        await self._request("DELETE", uri)

    async def status(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        found = await self._all(f"{_STATUS}{resource}/", {k: str(v) for k, v in filters.items()})
        return [o for o in found if matches(o, filters)]

    async def verify_login(self, *, use_client_cert: bool) -> str:
        """Prove the next login with a probe GET: the certificate login (``use_client_cert``; from then
        on every request presents the certificate), else the LDAP ``ldap.verify_user`` once the source
        includes LDAP, else the local admin. Returns who logged in ("local admin", "LDAP user 'x'",
        "LDAP user 'x' (client certificate)"): the API says nothing of the roles it granted.

        Raises:
            Rejected: the login is refused (401/403), or its credentials are not configured.
        """
        if use_client_cert:
            await self._probe("cert")
            self._identity = "cert"
            return f"LDAP user {self._verify_user()!r} (client certificate)"
        auth = await self.get(_CONFIG + "authentication/1/")
        if "LDAP" in str(auth.get("source", "")).split("+"):
            await self._probe("ldap")
            return f"LDAP user {self._verify_user()!r}"
        await self._probe("admin")
        return "local admin"

    def first_use_trusts(self) -> list[FirstUseTrust]:
        """The Manager's certificate trusted on first use since the last call (``pexip_api.trust_on_first_use``)."""
        trusts, self._first_use_trusts = self._first_use_trusts, []
        return trusts

    def pin_first_use(self, trusts: list[FirstUseTrust]) -> None:
        """The certificate an earlier run trusted on first use is pinned: another one needs ``ca_file``."""
        if self._spec.trust_on_first_use and not self._spec.tls_fingerprint:
            for trust in trusts:
                if trust.system == _SYSTEM:
                    self._first_use_pin = trust.fingerprint  # the latest journaled one wins

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    # --- identities --------------------------------------------------------------------------

    async def _schema(self, resource: str) -> dict[str, Any] | None:
        """``<resource>/schema/``, read once per client (None: the Manager would not give it)."""
        if resource not in self._schemas:
            # The steps of many nodes ask at once at a run's start: the first reads, the others wait for it
            # (a 21-node run read worker_vm/schema/ 20 times).
            async with self._schema_reads.setdefault(resource, asyncio.Lock()):
                if resource not in self._schemas:
                    try:
                        self._schemas[resource] = await self.get(f"{_CONFIG}{resource}/schema/")
                    except Rejected:
                        self._schemas[resource] = None
        return self._schemas[resource]

    def _verify_user(self) -> str:
        return self._ldap.verify_user if self._ldap is not None else ""

    async def _probe(self, identity: Identity) -> None:
        try:
            await self._request("GET", _PROBE, identity=identity)
        except Rejected as exc:
            status = getattr(exc, "http_status", None)
            if status in (401, 403):
                refused = Rejected(
                    f"login as {_describe(identity, self._verify_user())} refused: {exc}", system="pexip"
                )
                refused.http_status = status  # type: ignore[attr-defined]
                raise refused from None
            raise

    def _authorization(self, identity: Identity) -> dict[str, str]:
        if identity == "cert":  # the certificate instead of an Authorization header (pexip-api.md 7.5)
            return {}
        if identity == "ldap":
            ldap = self._ldap
            if ldap is None or not ldap.verify_user or ldap.verify_password is None:
                raise Rejected(
                    "cannot prove an LDAP login: ldap.verify_user and ldap.verify_password are not set", system="pexip"
                )
            user, password = ldap.verify_user, ldap.verify_password.reveal()
        else:
            assert self._spec.admin_password is not None  # checked in __init__
            user, password = self._spec.admin_user, self._spec.admin_password.reveal()
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def _session(self, with_cert: bool) -> aiohttp.ClientSession:
        if with_cert not in self._sessions:
            pin = self._spec.tls_fingerprint or self._first_use_pin
            if pin and self._pinned is None:
                self._pinned = await pinned_certificate(self._spec, self._address, pin) or ""
            elif self._spec.trust_on_first_use and self._pinned is None:
                self._pinned = await self._trust_first_use()
            ctx = client_context(self._spec, self._pinned, with_cert=with_cert)
            resolver = AddressResolver(URL(self._spec.url).host or "", self._address) if self._address else None
            connector = aiohttp.TCPConnector(ssl=ctx, resolver=resolver)
            self._sessions[with_cert] = aiohttp.ClientSession(connector=connector)
        return self._sessions[with_cert]

    async def _trust_first_use(self) -> str:
        """No pin yet and ``trust_on_first_use``: the certificate presented now is the pin (reported once)."""
        der = await presented_certificate(self._spec, self._address)
        self._first_use_pin = fingerprint_of(der)
        url = URL(self._spec.url)
        where = f"{self._address or url.host}:{url.port or 443}"
        self._first_use_trusts.append(FirstUseTrust(_SYSTEM, where, self._first_use_pin))
        log.warning(
            "the Management Node's certificate at %s trusted on first use: %s (pin it as pexip_api.tls_fingerprint)",
            where,
            self._first_use_pin,
        )
        return ssl.DER_cert_to_PEM_cert(der)

    async def _forget_pin(self) -> None:
        """The Manager changed certificates (its CA-signed one is installed): read it again."""
        self._pinned = None
        await self.aclose()

    # --- the wire ----------------------------------------------------------------------------

    async def _all(self, path: str, filters: dict[str, str]) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = []
        url: str | None = path
        params: dict[str, str] | None = filters | {"limit": "100"}
        while url:
            _, body = await self._request("GET", url, params=params)
            page = json.loads(body)
            objects.extend(page.get("objects", []))
            url, params = page.get("meta", {}).get("next"), None
        return objects

    async def _request(
        self,
        method: str,
        path: str,
        fields: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        *,
        identity: Identity | None = None,
    ) -> tuple[dict[str, str], bytes]:
        chosen = identity or self._identity
        try:
            return await self._send(method, path, fields, params, chosen)
        except Rejected as exc:
            # A rerun after client certificates were required: the Basic login is gone by design.
            if identity is None and chosen == "admin" and self._spec.client_cert and _status(exc) == 401:
                try:
                    answer = await self._send(method, path, fields, params, "cert")
                except Rejected as refused:
                    if _status(refused) in (401, 403):  # no login either way: both refusals, the certificate's last
                        both = Rejected(f"{exc}; with the client certificate: {refused}", system="pexip")
                        both.http_status = _status(exc)  # type: ignore[attr-defined]
                        raise both from None
                    raise
                self._identity = "cert"
                log.info("the Management Node refused the web administrator; using the client certificate from now on")
                return answer
            raise

    async def _send(
        self, method: str, path: str, fields: dict[str, Any] | None, params: dict[str, str] | None, identity: Identity
    ) -> tuple[dict[str, str], bytes]:
        session = await self._session(identity == "cert")
        url = path if path.startswith("http") else f"{self._base}{path}"
        data = json.dumps(fields).encode() if fields is not None else None
        headers = {"Accept": "application/json"} | self._authorization(identity)
        headers |= {"Content-Type": "application/json"} if data is not None else {}
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._slots:
                    await self._budget.wait()
                    async with session.request(method, url, data=data, headers=headers, params=params) as r:
                        body = await r.read()
                        status, answer = r.status, dict(r.headers)
            except aiohttp.ClientConnectorCertificateError as exc:
                if self._pinned and attempt < _ATTEMPTS:
                    await self._forget_pin()
                    session = await self._session(identity == "cert")
                    continue
                raise Rejected(
                    f"the Management Node at {self._base} presented a certificate that pexip_api.ca_file "
                    f"does not verify ({exc.certificate_error}); set pexip_api.ca_file to the CA that issued it",
                    system="pexip",
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                if method in _IDEMPOTENT and attempt < _ATTEMPTS:
                    await asyncio.sleep(self._delay)
                    continue
                raise Unreachable(f"{method} {path}: {type(exc).__name__}: {exc}", system="pexip") from None
            if status < 400:
                return answer, body
            if status == 429 and attempt < _ATTEMPTS:
                await asyncio.sleep(_retry_after(answer.get("Retry-After"), self._delay))
                continue
            if status >= 500:
                if method in _IDEMPOTENT and attempt < _ATTEMPTS:
                    await asyncio.sleep(self._delay)
                    continue
                if status == 503:  # starting or rebooting (a wizard's reboot): wait, bounded by retry.wait_timeout_s
                    raise NotYet(f"{method} {path}: the Management Node is not ready yet (HTTP 503)", system="pexip")
                raise Unreachable(f"{method} {path}: HTTP {status}", system="pexip")
            raise _rejected(method, path, status, body)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _status(exc: Rejected) -> int | None:
    status = getattr(exc, "http_status", None)
    return status if isinstance(status, int) else None


def _describe(identity: Identity, user: str) -> str:
    return {"admin": "the local admin", "ldap": f"LDAP user {user!r}", "cert": f"{user!r} by client certificate"}[
        identity
    ]


def _retry_after(value: str | None, default: float) -> float:
    try:
        return min(max(float(value or default), 0.0), 60.0)
    except ValueError:
        return default


def _rejected(method: str, path: str, status: int, body: bytes) -> Rejected:
    """A 4xx: the Tastypie body ``{"<resource>": {"<field>": ["msg"]}}`` as ``field: msg`` lines."""
    lines: list[str] = []
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for value in parsed.values():
            if isinstance(value, dict):
                for field, messages in value.items():
                    for message in messages if isinstance(messages, list) else [messages]:
                        lines.append(f"{field}: {message}")
            else:
                lines.append(str(value))
    detail = "; ".join(lines) or f"HTTP {status}"
    exc = Rejected(f"{method} {path}: {detail} (HTTP {status})", system="pexip")
    exc.http_status = status  # type: ignore[attr-defined]
    return exc
