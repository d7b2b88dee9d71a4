"""What a certificate is good for, read with ``cryptography``: the checks every certificate of the
deployment passes, written once.

The node certificates a CA signs (:mod:`orchestrator._cert_check`, before anything reaches a
node) and the orchestrator's own client certificate (:mod:`config._ready`, before anything is
written) are held to the same reading of issuers, names and usages.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "UPN_OID",
    "extension",
    "is_ca",
    "chain_problem",
    "names",
    "usage_problem",
    "user_principal_names",
    "client_certificate_problems",
]

# The Microsoft userPrincipalName otherName of a subjectAltName (the guide's "subjectAltName
# userPrincipalName" client-certificate mode).
UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
_USAGES = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH}


def extension(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def is_ca(cert: x509.Certificate) -> bool:
    constraints = extension(cert, x509.BasicConstraints)
    return isinstance(constraints, x509.BasicConstraints) and constraints.ca


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):  # a bad signature, or a key type that cannot sign
        return False
    return True


def chain_problem(cert: x509.Certificate, chain: Sequence[x509.Certificate], field: str = "pki.ca_chain") -> str | None:
    """None when ``cert`` chains to a self-signed CA of ``chain`` (named ``field`` in the answer); else why not."""
    current, seen = cert, 0
    while seen <= len(chain):
        issuer = next((c for c in chain if c.subject == current.issuer and is_ca(c) and _signed_by(current, c)), None)
        if issuer is None:
            if any(c.subject == current.issuer for c in chain):
                return (
                    f"it is not signed by a CA of {field}: its issuer {current.issuer.rfc4514_string()} has "
                    "the name of one, but its signature does not verify with that CA's key (another CA)"
                )
            return f"it is not signed by a CA of {field} (issuer {current.issuer.rfc4514_string()})"
        if issuer.issuer == issuer.subject:
            return None
        current, seen = issuer, seen + 1
    return f"its chain in {field} loops"


def names(cert: x509.Certificate) -> list[str]:
    """The names a TLS client matches: the SANs' DNS names and IP addresses; the CN only without SANs."""
    sans = extension(cert, x509.SubjectAlternativeName)
    if isinstance(sans, x509.SubjectAlternativeName):
        return [n.lower() for n in sans.get_values_for_type(x509.DNSName)] + [
            str(a) for a in sans.get_values_for_type(x509.IPAddress)
        ]
    return [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def usage_problem(cert: x509.Certificate, needed: Sequence[str], why: str) -> str | None:
    """None when the extended key usage allows every one of ``needed`` ("serverAuth", "clientAuth").

    No extendedKeyUsage at all means no restriction (RFC 5280, 4.2.1.12): every use is allowed.
    """
    usages = extension(cert, x509.ExtendedKeyUsage)
    if not isinstance(usages, x509.ExtendedKeyUsage):
        return None
    lacking = [name for name in needed if _USAGES[name] not in usages]
    return f"its extended key usage lacks {' and '.join(lacking)} ({why})" if lacking else None


def _utf8_string(der: bytes) -> str | None:
    """The text of a DER UTF8String (how a UPN otherName holds its value), else None."""
    if len(der) < 2 or der[0] != 0x0C:
        return None
    length, start = der[1], 2
    if length & 0x80:  # long form: the next (length & 0x7F) bytes hold the length
        count = length & 0x7F
        length, start = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    body = der[start : start + length]
    return body.decode("utf-8", errors="replace") if len(body) == length else None


def user_principal_names(cert: x509.Certificate) -> list[str]:
    """The subjectAltName userPrincipalName values of ``cert``."""
    sans = extension(cert, x509.SubjectAlternativeName)
    if not isinstance(sans, x509.SubjectAlternativeName):
        return []
    found = (_utf8_string(o.value) for o in sans.get_values_for_type(x509.OtherName) if o.type_id == UPN_OID)
    return [upn for upn in found if upn is not None]


def client_certificate_problems(
    cert: x509.Certificate, *, mode: str, identity: str, chain: Sequence[x509.Certificate]
) -> list[str]:
    """What keeps ``cert`` from logging ``identity`` in once the Manager requires client certificates.

    Args:
        mode: ``ldap.client_certificate``: "CN" (identity in the subject CN) or "UPN" (in the
            subjectAltName userPrincipalName; ``identity`` or ``identity@domain``).
        identity: the LDAP user the orchestrator logs in as (``ldap.verify_user``).
        chain: the CA chain the Manager is given to trust (``pki.ca_chain``); empty: not checked.
    """
    problems = []
    wanted = identity.casefold()
    if mode == "UPN":
        upns = user_principal_names(cert)
        if not any(u.casefold() == wanted or u.casefold().partition("@")[0] == wanted for u in upns):
            problems.append(
                f"its subjectAltName userPrincipalName is not {identity!r} (got {upns or 'none'}); "
                f"ldap.client_certificate = UPN logs in the identity there"
            )
    else:
        cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if not any(cn.casefold() == wanted for cn in cns):
            problems.append(
                f"its subject CN is not {identity!r} (got {cns or 'none'}); "
                "ldap.client_certificate = CN logs in the identity there"
            )
    if is_ca(cert):
        problems.append("it is a CA certificate (basicConstraints CA:TRUE), not a user's client certificate")
    if chain and (why := chain_problem(cert, chain)) is not None:
        problems.append(why + ": the Manager trusts only that chain")
    if (why := usage_problem(cert, ["clientAuth"], "a TLS client certificate needs it")) is not None:
        problems.append(why)
    return problems
