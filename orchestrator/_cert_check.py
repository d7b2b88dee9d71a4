"""The checks a CA's signed certificate passes before ``orchestrator cert import`` records it (issue #7).

Nothing reaches the node, and no gate opens, unless the certificate is for the node's pending
CSR (same public key), chains to the trusted ``pki.ca_chain``, is valid now and for the node's
FQDN, is no CA certificate, and may serve both TLS server and client. Otherwise the node's
CSR would be consumed by a certificate it cannot use, and the node could not recover.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = ["KEY_MISMATCH", "certificate_problems", "load_pem_certificates"]

# The guide's (and Pexip's) own words for a certificate that is not the CSR's.
KEY_MISMATCH = "Certificate and private key do not appear to be part of the same key pair"


def load_pem_certificates(text: str) -> list[x509.Certificate]:
    """Every certificate of a PEM text (raises ValueError when there is none)."""
    return x509.load_pem_x509_certificates(text.encode())


def _public(key: object) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined, no-any-return]


def _extension(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, x509.BasicConstraints)
    return isinstance(constraints, x509.BasicConstraints) and constraints.ca


def _chains(cert: x509.Certificate, chain: Sequence[x509.Certificate]) -> str | None:
    """None when ``cert`` chains to a self-signed CA of ``chain``; else why not."""
    current, seen = cert, 0
    while seen <= len(chain):
        issuer = next((c for c in chain if c.subject == current.issuer and _is_ca(c) and _signed_by(current, c)), None)
        if issuer is None:
            if any(c.subject == current.issuer for c in chain):
                return (
                    f"it is not signed by a CA of pki.ca_chain: its issuer {current.issuer.rfc4514_string()} has "
                    "the name of one, but its signature does not verify with that CA's key (another CA)"
                )
            return f"it is not signed by a CA of pki.ca_chain (issuer {current.issuer.rfc4514_string()})"
        if issuer.issuer == issuer.subject:
            return None
        current, seen = issuer, seen + 1
    return "its chain in pki.ca_chain loops"


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):  # a bad signature, or a key type that cannot sign
        return False
    return True


def _names(cert: x509.Certificate) -> list[str]:
    """The names a TLS client matches: the SANs' DNS names and IP addresses; the CN only without SANs."""
    sans = _extension(cert, x509.SubjectAlternativeName)
    if isinstance(sans, x509.SubjectAlternativeName):
        return [n.lower() for n in sans.get_values_for_type(x509.DNSName)] + [
            str(a) for a in sans.get_values_for_type(x509.IPAddress)
        ]
    return [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def certificate_problems(
    cert: x509.Certificate,
    *,
    csr_pem: str | None,
    chain: Sequence[x509.Certificate],
    fqdn: str,
    now: datetime | None = None,
    min_valid_days: int = 0,
) -> list[str]:
    """What is wrong with ``cert`` for a node with ``fqdn`` and pending CSR ``csr_pem`` (empty: nothing).

    Args:
        fqdn: the name the certificate must be valid for: the node's FQDN, or its IP address
            (``pki.subject = "address"``).
        min_valid_days: how long past ``now`` it must stay valid (``pki.min_valid_days``).
        csr_pem: the node's pending CSR as the journal recorded it (None: none is pending).
        chain: the trusted CA chain (``pki.ca_chain``).
    """
    now = now or datetime.now(UTC)
    if csr_pem is None:
        return ["no CSR is pending for the node: it has not reached the certificate gate, or is past it"]
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    if _public(cert.public_key()) != _public(csr.public_key()):
        return [f"{KEY_MISMATCH}: the certificate's public key is not the one of the node's CSR"]
    problems = []
    if _is_ca(cert):
        problems.append("it is a CA certificate (basicConstraints CA:TRUE), not the node's server certificate")
    why = _chains(cert, chain)
    if why:
        problems.append(why)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        problems.append(
            f"it is not valid now ({now:%Y-%m-%d %H:%M} UTC; valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d %H:%M})"
        )
    elif cert.not_valid_after_utc < now + timedelta(days=min_valid_days):
        problems.append(
            f"it expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, sooner than pki.min_valid_days "
            f"({min_valid_days} days from now); have the CA sign it for longer"
        )
    if fqdn.lower() not in _names(cert):
        what = "address" if _is_ip(fqdn) else "FQDN"
        problems.append(f"it is not issued for the node's {what} {fqdn} (names {_names(cert)})")
    usages = _extension(cert, x509.ExtendedKeyUsage)
    # No extendedKeyUsage at all means no restriction (RFC 5280, 4.2.1.12): both uses are allowed.
    if isinstance(usages, x509.ExtendedKeyUsage):
        lacking = [
            name
            for name, oid in (
                ("serverAuth", ExtendedKeyUsageOID.SERVER_AUTH),
                ("clientAuth", ExtendedKeyUsageOID.CLIENT_AUTH),
            )
            if oid not in usages
        ]
        if lacking:
            problems.append(
                f"its extended key usage lacks {' and '.join(lacking)} (the node needs TLS server and client)"
            )
    return problems
