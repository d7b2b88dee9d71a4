"""How the client trusts the Management Node (TLS always verified) and presents its own certificate.

Before the Manager has its CA-signed certificate it serves the self-signed one it was installed
with: ``pexip_api.tls_fingerprint`` pins that one. The client then reads the certificate the
Manager presents once (a handshake that sends nothing), and, if its SHA-256 is the pin, trusts
exactly that certificate from then on (it is loaded as the only trust anchor: no other
certificate can pass). Once the Manager presents another one (the deployment's), the pin no
longer matches and ``pexip_api.ca_file`` verifies it, host name included. With
``pexip_api.trust_on_first_use`` (explicit) and no pin, the first certificate seen becomes the pin; the
client reports it (:class:`adapters.base.FirstUseTrust`) for the journal, which hands it back on later runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import tempfile

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from config.errors import Rejected, Unreachable
from config.model import PexipApiSpec

__all__ = ["AddressResolver", "fingerprint_of", "presented_certificate", "pinned_certificate", "client_context"]

_PREFLIGHT_TIMEOUT_S = 10.0


def fingerprint_of(der: bytes) -> str:
    """``sha256:AA:BB:...`` of a DER certificate (the format of ``pexip_api.tls_fingerprint``)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class AddressResolver(AbstractResolver):
    """The Manager's FQDN resolves to its configured address, nothing else resolves at all.

    The URL keeps the FQDN (TLS server name, Host header: host-header validation refuses a bare IP,
    pexip-api.md 7.11); the connection goes to the address the configuration gives, never to
    whatever DNS says.
    """

    def __init__(self, host: str, address: str):
        self._host, self._address = host.lower(), address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.lower().rstrip(".") != self._host:
            raise OSError(f"{host} is not the Management Node ({self._host}): refused to resolve it")
        return [
            ResolveResult(
                hostname=host,
                host=self._address,
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        """Nothing to release."""


async def presented_certificate(spec: PexipApiSpec, address: str | None = None) -> bytes:
    """The DER certificate the Manager presents, read by a handshake that sends nothing.

    Raises:
        Unreachable: the Manager does not answer.
    """
    url = URL(spec.url)
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False  # this handshake only reads the certificate; nothing is sent over it
    probe.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(address or url.host, url.port or 443, ssl=probe, server_hostname=url.host),
            _PREFLIGHT_TIMEOUT_S,
        )
    except (OSError, TimeoutError) as exc:
        raise Unreachable(f"the Management Node at {url} does not answer: {exc}", system="pexip") from None
    try:
        der: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return der


async def pinned_certificate(spec: PexipApiSpec, address: str | None = None, pin: str | None = None) -> str | None:
    """The PEM of the Manager's certificate when it is the one ``pin`` (default ``tls_fingerprint``) pins;
    ``None`` when it presents another and ``ca_file`` is there to verify that one.

    Raises:
        Rejected: another certificate and no ``ca_file`` (the message gives both fingerprints).
        Unreachable: the Manager does not answer.
    """
    pin = pin or spec.tls_fingerprint
    assert pin is not None
    der = await presented_certificate(spec, address)
    seen = fingerprint_of(der)
    if seen.upper() == pin.upper():
        return ssl.DER_cert_to_PEM_cert(der)
    if spec.ca_file:
        return None
    where = "pexip_api.tls_fingerprint pins" if spec.tls_fingerprint else "the journal holds, trusted on first use,"
    raise Rejected(
        f"the Management Node at {spec.url} presents a certificate with fingerprint {seen}; {where} "
        f"{pin}. Check the certificate on the Manager's console, then fix the pin, or set "
        "pexip_api.ca_file once the Manager has its CA-signed certificate",
        system="pexip",
    )


def client_context(spec: PexipApiSpec, pinned: str | None, *, with_cert: bool) -> ssl.SSLContext:
    """The TLS context of a session: the pinned certificate alone, else ``ca_file`` (else the system's CAs)."""
    if pinned:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # the certificate itself is pinned, whatever names it carries
        ctx.load_verify_locations(cadata=pinned)
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a self-signed end-entity certificate as the anchor
    else:
        ctx = ssl.create_default_context(cafile=spec.ca_file) if spec.ca_file else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if with_cert:
        _load_client_certificate(ctx, spec)
    return ctx


def _load_client_certificate(ctx: ssl.SSLContext, spec: PexipApiSpec) -> None:
    """``pexip_api.client_cert`` and its key into ``ctx``.

    The ssl module loads keys only from files: the key is written to a private (0600) temporary
    file that is removed as soon as it is loaded.
    """
    if not spec.client_cert or spec.client_key is None:
        raise Rejected(
            "a client certificate login needs pexip_api.client_cert and pexip_api.client_key; set both", system="pexip"
        )
    fd, path = tempfile.mkstemp(prefix="orchestrator-key-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(spec.client_key.reveal())
        ctx.load_cert_chain(spec.client_cert, path)
    except (OSError, ssl.SSLError) as exc:
        raise Rejected(
            f"pexip_api.client_cert {spec.client_cert!r} with pexip_api.client_key {spec.client_key.ref} cannot be "
            f"loaded ({type(exc).__name__}); give a PEM certificate and its matching private key",
            system="pexip",
        ) from None
    finally:
        os.unlink(path)
