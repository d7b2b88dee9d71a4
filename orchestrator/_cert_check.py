"""The checks a CA's signed certificate passes before ``orchestrator cert import`` records it (issue #7).

Nothing reaches the node, and no gate opens, unless the certificate is for the node's pending
CSR (same public key), chains to the trusted ``pki.ca_chain``, is valid now and for the node's
FQDN, is no CA certificate, and may serve both TLS server and client. Otherwise the node's
CSR would be consumed by a certificate it cannot use, and the node could not recover.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509

from config._x509 import chain_problem, is_ca, names, usage_problem

__all__ = ["KEY_MISMATCH", "certificate_problems", "load_pem_certificates"]

# The guide's (and Pexip's) own words for a certificate that is not the CSR's.
KEY_MISMATCH = "Certificate and private key do not appear to be part of the same key pair"


def load_pem_certificates(text: str) -> list[x509.Certificate]:
    """Every certificate of a PEM text (raises ValueError when there is none)."""
    return list(_parsed(text))


@functools.lru_cache(maxsize=16)
def _parsed(text: str) -> tuple[x509.Certificate, ...]:
    # The same text parses to the same certificates: the trusted chain, read again for every node's
    # answer, is parsed (and its CA's extensions and key decoded) once, not once per node (issue #11).
    return tuple(x509.load_pem_x509_certificates(text.encode()))


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
    if cert.public_key() != csr.public_key():  # the keys' own comparison (type, then parameters)
        return [f"{KEY_MISMATCH}: the certificate's public key is not the one of the node's CSR"]
    problems = []
    if is_ca(cert):
        problems.append("it is a CA certificate (basicConstraints CA:TRUE), not the node's server certificate")
    why = chain_problem(cert, chain)
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
    if fqdn.lower() not in names(cert):
        what = "address" if _is_ip(fqdn) else "FQDN"
        problems.append(f"it is not issued for the node's {what} {fqdn} (names {names(cert)})")
    why = usage_problem(cert, ["serverAuth", "clientAuth"], "the node needs TLS server and client")
    if why:
        problems.append(why)
    return problems
