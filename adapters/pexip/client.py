"""The Management Node's REST API over HTTPS (aiohttp): TLS always verified, HTTP Basic, paging by
``meta.next``, Tastypie 400 bodies turned into field messages, idempotent verbs retried.

Errors: a 4xx is :class:`~config.errors.Rejected` naming the fields and messages the API gave;
a connection error or a 5xx is :class:`~config.errors.Unreachable` (retryable); 429 waits for
``Retry-After`` and tries again. Only GET, PATCH and DELETE are retried: a POST that may have
been applied is never sent twice. At most 5 requests are in flight. Neither the password nor a
worker_vm body is ever logged or put in an exception.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from typing import Any

import aiohttp
from yarl import URL

from adapters.base import Created
from config.errors import Rejected, Unreachable
from config.model import PexipApiSpec

__all__ = ["HttpPexipApi"]

log = logging.getLogger(__name__)

_CONFIG = "/api/admin/configuration/v1/"
_STATUS = "/api/admin/status/v1/"
_IDEMPOTENT = {"GET", "PATCH", "DELETE"}
_ATTEMPTS = 3
_IN_FLIGHT = 5


class HttpPexipApi:
    """:class:`adapters.base.PexipApi` against a real Management Node (or the lab's server)."""

    def __init__(self, spec: PexipApiSpec, *, retry_delay_s: float = 0.5):
        if spec.admin_password is None:
            raise Rejected("pexip_api.admin_password is not set", system="pexip")
        self._base = spec.url.rstrip("/")
        token = base64.b64encode(f"{spec.admin_user}:{spec.admin_password.reveal()}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        ctx = ssl.create_default_context(cafile=spec.ca_file) if spec.ca_file else ssl.create_default_context()
        self._ssl = ctx
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(_IN_FLIGHT)
        self._delay = retry_delay_s

    def __repr__(self) -> str:
        return f"HttpPexipApi({self._base!r})"

    # --- the Protocol ------------------------------------------------------------------------

    async def list_objects(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        return await self._all(f"{_CONFIG}{resource}/", filters)

    async def get(self, uri: str) -> dict[str, Any]:
        _, body = await self._request("GET", uri)
        result: dict[str, Any] = json.loads(body)
        return result

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
        return await self._all(f"{_STATUS}{resource}/", filters)

    async def verify_login(self, *, use_client_cert: bool) -> str:
        raise Rejected("verify_login is not implemented by the real client yet (issue #8)", system="pexip")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the wire ----------------------------------------------------------------------------

    async def _all(self, path: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = []
        url: str | None = path
        params: dict[str, str] | None = {k: str(v) for k, v in filters.items()} | {"limit": "100"}
        while url:
            _, body = await self._request("GET", url, params=params)
            page = json.loads(body)
            objects.extend(page.get("objects", []))
            url, params = page.get("meta", {}).get("next"), None
        return objects

    async def _request(
        self, method: str, path: str, fields: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> tuple[dict[str, str], bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
        url = path if path.startswith("http") else f"{self._base}{path}"
        data = json.dumps(fields).encode() if fields is not None else None
        headers = dict(self._headers) | ({"Content-Type": "application/json"} if data is not None else {})
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._slots:
                    async with self._session.request(method, url, data=data, headers=headers, params=params) as r:
                        body = await r.read()
                        status, answer = r.status, dict(r.headers)
            except aiohttp.ClientConnectorCertificateError as exc:
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
                raise Unreachable(f"{method} {path}: HTTP {status}", system="pexip")
            raise _rejected(method, path, status, body)


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
