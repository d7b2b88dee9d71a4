"""The lab's test PKI: a CA and the TLS server certificate vcsim serves on 127.0.0.1.

The certificates come from the project's one X.509 builder,
:func:`adapters.sim._pki.issue_certificate`, which the simulated PKI uses too.
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from orchestrator.lab._files import write_private

__all__ = ["Pki", "make_test_pki", "thumbprint_of"]


@dataclass(frozen=True)
class Pki:
    """Where the lab's CA certificate, server certificate and server key are (PEM)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_test_pki(directory: Path, *, name: str = "vcsim", ca_name: str = "Pexip Orchestrator Lab CA") -> Pki:
    """A test CA and a 2048-bit server certificate for 127.0.0.1/localhost, made once.

    RSA 2048 because govmomi's built-in certificate is 1024-bit, which OpenSSL 3 refuses.
    """
    # Imported here: adapters.sim loads the whole simulated world, which `lab status` never needs.
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from adapters.sim._pki import issue_certificate, key_pem, new_key

    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory / f"{name}-ca.pem", directory / f"{name}.pem", directory / f"{name}.key")
    if pki.ca_file.is_file() and pki.cert_file.is_file() and pki.key_file.is_file():
        return pki
    ca_key = new_key("RSA2048")
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = issue_certificate(ca_subject, ca_key.public_key(), ca_key, ca=True, days=365)
    key = new_key("RSA2048")
    cert = issue_certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
        key.public_key(),
        ca_key,
        issuer=ca,
        days=365,
        ca=False,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    write_private(pki.key_file, key_pem(key).encode())
    pki.cert_file.write_bytes(cert.public_bytes(Encoding.PEM))
    pki.ca_file.write_bytes(ca.public_bytes(Encoding.PEM))
    return pki


def thumbprint_of(cert_file: Path) -> str:
    """``sha256:AA:BB:...`` of a PEM certificate: what ``vcenter.thumbprint`` pins."""
    der = ssl.PEM_cert_to_DER_cert(cert_file.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
