"""The lab's test PKI: a CA, the TLS server certificate vcsim and slapd serve on 127.0.0.1, and
the orchestrator's client certificate (:func:`issue_client_certificate`) for its LDAP identity.

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

__all__ = ["Pki", "issue_client_certificate", "make_test_pki", "thumbprint_of"]


@dataclass(frozen=True)
class Pki:
    """Where the lab's CA certificate, server certificate and server key are (PEM); and the CA's key,
    which issues the lab's client certificates (None: a PKI made elsewhere, that issues none)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    ca_key_file: Path | None = None


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
    pki = Pki(
        directory / f"{name}-ca.pem", directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}-ca.key"
    )
    if all(p.is_file() for p in (pki.ca_file, pki.cert_file, pki.key_file, pki.ca_key_file) if p is not None):
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
    assert pki.ca_key_file is not None
    write_private(pki.ca_key_file, key_pem(ca_key).encode())
    write_private(pki.key_file, key_pem(key).encode())
    pki.cert_file.write_bytes(cert.public_bytes(Encoding.PEM))
    pki.ca_file.write_bytes(ca.public_bytes(Encoding.PEM))
    return pki


def thumbprint_of(cert_file: Path) -> str:
    """``sha256:AA:BB:...`` of a PEM certificate: what ``vcenter.thumbprint`` pins."""
    der = ssl.PEM_cert_to_DER_cert(cert_file.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def issue_client_certificate(
    pki: Pki, identity: str, mode: str, cert_file: Path, key_file: Path, *, domain: str, days: int = 365
) -> None:
    """A TLS client certificate for the LDAP user ``identity``, issued by the lab CA, and its key (0600).

    ``mode`` is ``ldap.client_certificate``: "CN" puts ``identity`` in the subject CN; "UPN" also
    puts ``identity@domain`` in the subjectAltName userPrincipalName, where the Manager looks then.
    Made anew each time (a certificate of an earlier identity or mode must not linger).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from adapters.sim._pki import issue_certificate, key_pem, load_key, new_key
    from config._x509 import UPN_OID

    if pki.ca_key_file is None:
        raise ValueError("this PKI keeps no CA key: it cannot issue client certificates")
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    key = new_key("ECDSAP256")
    sans: list[x509.GeneralName] = []
    if mode == "UPN":
        upn = f"{identity}@{domain}".encode()
        if len(upn) > 127:
            raise ValueError(f"userPrincipalName {identity}@{domain} is too long for the lab CA (127 bytes at most)")
        sans.append(x509.OtherName(UPN_OID, b"\x0c" + bytes([len(upn)]) + upn))  # DER UTF8String (< 128 bytes)
    cert = issue_certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]),
        key.public_key(),
        load_key(pki.ca_key_file.read_text()),
        issuer=ca,
        days=days,
        ca=False,
        sans=sans,
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    write_private(key_file, key_pem(key).encode())
    cert_file.write_bytes(cert.public_bytes(Encoding.PEM))
