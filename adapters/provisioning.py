"""The real client of each Conferencing Node's provisioning interface (HTTPS, tcp/8443).

A node deployed from the generic OVA (``MANUAL-PROVISION-ONLY``, ``pexip-api.md`` 7.3) waits
on tcp/8443 for its bootstrap file: the worker_vm POST answer, which carries password
hashes. :class:`HttpsProvisioning` uploads it the way the interface's form does (the wire
format is an assumption, written down in :mod:`adapters.sim.servers.provisioning_http`):
``POST /`` as ``multipart/form-data``, the file in the part ``file``.

Where: ``conferencing[i].provisioning_url`` when set (the lab: one loopback port per node),
else ``https://<address>:8443/``.

TLS is always verified, because the file goes to nobody but the node. A freshly deployed
node presents its own self-signed certificate (the guide), which no CA vouches for, so the
node's certificate is checked in one of three ways, first match wins:

1. ``conferencing[i].provisioning_thumbprint`` ("sha256:AA:BB:..."): the leaf is pinned.
2. ``pexip_api.provisioning_ca_file``: the chain and the host in the URL are verified (the
   certificate must name the address or name the URL uses).
3. ``pexip_api.provisioning_trust_first_use = true`` (explicit, weaker): the certificate
   presented on a first handshake that sends nothing is pinned for the rest of the run,
   and its fingerprint is logged at WARNING so that it can be compared with the node's
   console and written into the configuration.

With none of them the configuration is refused (exit 2) before anything is sent.

Errors: a refused, dropped or timed-out connection is :class:`Unreachable` /
:class:`Timeout` (retryable: the VM may still be booting, and uploading the same file again
is a replay the node accepts); a certificate that fails verification, a 409 (the node took
another file) and any other 4xx are :class:`Rejected`. The file is never logged, and no
server text that repeats any of it reaches an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import aiohttp

from adapters.base import FirstUseTrust
from config.errors import ConfigError, Rejected, Timeout, Unreachable
from config.model import CONFERENCING, Deployment, NodeSpec

__all__ = ["HttpsProvisioning", "PROVISIONING_PORT", "UPLOAD_FIELD", "map_aiohttp_errors", "provisioning_url"]

PROVISIONING_PORT = 8443
UPLOAD_FIELD = "file"  # the form's file part (see the server's module docstring)
SYSTEM = "provisioning"

_log = logging.getLogger(__name__)
_EXCERPT = 200
_GRAM = 12  # a server excerpt sharing this many characters in a row with the file is dropped


def provisioning_url(node: NodeSpec) -> str:
    """Where ``node``'s provisioning interface answers."""
    return node.provisioning_url or f"https://{node.address}:{PROVISIONING_PORT}/"


def _pin(thumbprint: str) -> bytes:
    """``"sha256:AA:BB:..."`` (the format ``config`` checks) -> the 32 digest bytes."""
    text = thumbprint.strip()
    text = text[len("sha256:") :] if text.lower().startswith("sha256:") else text
    return bytes.fromhex(text.replace(":", ""))


def _colons(digest: bytes) -> str:
    """``sha256:AA:BB:...`` of a SHA-256 digest: the form ``provisioning_thumbprint`` takes."""
    return "sha256:" + ":".join(f"{b:02X}" for b in digest)


def _excerpt(text: str, body: bytes) -> str:
    """At most ``_EXCERPT`` characters of a server's answer, or nothing if it echoes the file."""
    text = " ".join(text.split())[:_EXCERPT]
    secret = body.decode("utf-8", errors="replace")
    if any(text[i : i + _GRAM] in secret for i in range(max(len(text) - _GRAM + 1, 0))):
        return "(answer withheld: it repeats part of the bootstrap file)"
    return text


@contextlib.contextmanager
def map_aiohttp_errors(where: str, verified_by: str) -> Iterator[None]:
    """aiohttp's and asyncio's errors as ours, chained; ``verified_by`` names the TLS setting."""
    try:
        yield
    except aiohttp.ServerFingerprintMismatch as exc:
        raise Rejected(
            f"{where} presents a certificate ({_colons(exc.got)}) other than {verified_by}: "
            "not the node, or the node was redeployed; compare it with the node's console, then fix the setting",
            system=SYSTEM,
        ) from exc
    except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
        raise Rejected(
            f"{where}: its certificate does not verify with {verified_by} ({exc}); fix the setting or pin the "
            "node's certificate with provisioning_thumbprint",
            system=SYSTEM,
        ) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise Timeout(f"{where} did not answer in time", system=SYSTEM) from exc
    except aiohttp.ClientConnectorError as exc:
        raise Unreachable(f"{where} does not answer ({exc.os_error}): its VM may not run yet", system=SYSTEM) from exc
    except aiohttp.ClientError as exc:  # dropped mid-request: the same file again is a replay
        raise Unreachable(f"{where}: the connection failed ({type(exc).__name__}: {exc})", system=SYSTEM) from exc


class HttpsProvisioning:
    """:class:`adapters.base.NodeProvisioning` over HTTPS, one node at a time.

    Args:
        deployment: its Conferencing Nodes and ``pexip_api`` say where and how to verify.
        timeout_s: the whole upload's bound (connect, send, answer).

    Raises:
        ConfigError: a Conferencing Node whose certificate could not be verified (at construction).

    Example::

        async with HttpsProvisioning(deployment) as provisioning:
            await provisioning.upload_bootstrap(node, body)
    """

    def __init__(self, deployment: Deployment, *, timeout_s: float = 30.0):
        api = deployment.pexip_api
        self._ca_file = api.provisioning_ca_file  # resolved against the configuration's directory by config
        self._first_use = api.provisioning_trust_first_use
        self._index = {n.name: i for i, n in enumerate(deployment.conferencing)}
        problems = [
            (f"conferencing[{i}].provisioning_thumbprint", "missing: no way to verify the node's certificate")
            for i, n in enumerate(deployment.conferencing)
            if not (n.provisioning_thumbprint or self._ca_file or self._first_use)
        ]
        if problems:
            raise ConfigError(problems)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._ca_context: ssl.SSLContext | None = None
        self._first_pins: dict[str, bytes] = {}  # node -> the digest trusted on first use, this run
        self._journaled: dict[str, bytes] = {}  # interface URL -> the digest an earlier run trusted on first use
        self._unreported: list[FirstUseTrust] = []

    def first_use_trusts(self) -> list[FirstUseTrust]:
        """The nodes' certificates trusted on first use since the last call, for the journal."""
        trusts, self._unreported = self._unreported, []
        return trusts

    def pin_first_use(self, trusts: list[FirstUseTrust]) -> None:
        """Certificates earlier runs trusted on first use (by interface URL) are pinned from now on."""
        for trust in trusts:
            if trust.system == SYSTEM:
                self._journaled[trust.address] = _pin(trust.fingerprint)

    async def upload_bootstrap(self, node: NodeSpec, body: bytes) -> None:
        """Upload ``body`` to ``node``'s provisioning interface (see :class:`adapters.base.NodeProvisioning`)."""
        url = provisioning_url(node)
        where = f"{node.name}'s provisioning interface ({url})"
        if node.role != CONFERENCING:
            raise Rejected(f"{node.name} is a Management Node: it has no provisioning interface", system=SYSTEM)
        if not body:
            raise Rejected(f"{where}: refusing to upload an empty bootstrap file", system=SYSTEM)
        tls, verified_by = await self._tls(node, url, where)
        form = aiohttp.FormData()
        form.add_field(UPLOAD_FIELD, body, filename=f"{node.name}.bootstrap", content_type="application/octet-stream")
        session = self._open()
        with map_aiohttp_errors(where, verified_by):
            async with session.post(url, data=form, ssl=tls, allow_redirects=False) as response:
                status, text = response.status, await response.text(errors="replace")
        sha = hashlib.sha256(body).hexdigest()
        if 200 <= status < 300:
            _log.info("%s took the bootstrap file (sha256 %s, %d bytes)", where, sha, len(body))
            return
        said = _excerpt(text, body)
        if status == 409:
            raise Rejected(
                f"{where} already took another bootstrap file (ours: sha256 {sha[:16]}): {said}; redeploy its VM "
                "from the generic OVA to provision it again",
                system=SYSTEM,
            )
        if status in (429, 502, 503, 504):
            raise Unreachable(f"{where} answered {status}, not yet: {said}", system=SYSTEM)
        raise Rejected(f"{where} refused the bootstrap file with {status}: {said}", system=SYSTEM)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HttpsProvisioning:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- internals -------------------------------------------------------------------------

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No cookies, no proxies from the environment: the file goes to the node, directly.
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
            )
        return self._session

    async def _tls(self, node: NodeSpec, url: str, where: str) -> tuple[aiohttp.Fingerprint | ssl.SSLContext, str]:
        """How this node's certificate is verified, and the setting that says so (for errors)."""
        field = f"conferencing[{self._index.get(node.name, '?')}].provisioning_thumbprint"
        if node.provisioning_thumbprint:
            return aiohttp.Fingerprint(_pin(node.provisioning_thumbprint)), field
        if self._ca_file:
            return self._ca(), f"pexip_api.provisioning_ca_file ({self._ca_file})"
        pin = self._first_pins.get(node.name)
        if pin is None and url in self._journaled:
            self._first_pins[node.name] = pin = self._journaled[url]
            return aiohttp.Fingerprint(pin), "the certificate trusted on first use (journaled by an earlier run)"
        if pin is None:
            pin = await self._first_use_pin(url, where)
            self._first_pins[node.name] = pin
            self._unreported.append(FirstUseTrust(SYSTEM, url, _colons(pin)))
            _log.warning(
                "%s: trusting its certificate on first use (pexip_api.provisioning_trust_first_use): %s; "
                "compare it with the node's console and pin it as %s",
                where,
                _colons(pin),
                field,
            )
        return aiohttp.Fingerprint(pin), "the certificate trusted on first use in this run"

    def _ca(self) -> ssl.SSLContext:
        if self._ca_context is None:
            try:
                ctx = ssl.create_default_context(cafile=self._ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"cannot read the CA file {self._ca_file!r}: {exc}; give a PEM file of the CA that signed the "
                    "nodes' provisioning certificates",
                    "pexip_api.provisioning_ca_file",
                ) from exc
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._ca_context = ctx
        return self._ca_context

    async def _first_use_pin(self, url: str, where: str) -> bytes:
        """The SHA-256 of the certificate the node presents, from a handshake that sends nothing."""
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or PROVISIONING_PORT
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # only to read the certificate: nothing is sent on this connection
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), self._timeout.total)
        except TimeoutError as exc:
            raise Timeout(f"{where} did not answer in time", system=SYSTEM) from exc
        except OSError as exc:
            raise Unreachable(f"{where} does not answer ({exc}): its VM may not run yet", system=SYSTEM) from exc
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True) or b""
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        return hashlib.sha256(der).digest()
