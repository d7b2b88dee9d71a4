"""Certificate plumbing shared by the simulated Management Node and the simulated CA.

Real keys, real CSRs and real X.509 certificates made with ``cryptography``, so that what
the simulation hands out passes ``openssl req -verify`` / ``openssl verify`` and the real
adapters can be tested against it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from config.rules import CSR_KEY_TYPES

__all__ = [
    "PrivateKey",
    "KEY_TYPES",
    "new_key",
    "key_pem",
    "load_key",
    "fingerprint",
    "parse_dn",
    "general_name",
    "san_names",
    "make_csr",
    "load_csr",
    "csr_names",
    "load_certs",
    "issue_certificate",
    "make_root",
    "sign_csr",
    "self_signed",
    "certificate_fields",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# The CSR generator's private_key_type choices (pexip-api.md section 2, item 4), but UPLOAD.
KEY_TYPES = CSR_KEY_TYPES

_DN_ATTRIBUTES = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
}

# "Include Microsoft certificate template extension": the 'WebServer' template name.
_MS_TEMPLATE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2")


def new_key(key_type: str) -> PrivateKey:
    """A fresh private key of a CSR ``private_key_type`` (RSA2048, RSA4096, ECDSAP256)."""
    if key_type == "ECDSAP256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type in ("RSA2048", "RSA4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    raise ValueError(f"unknown private key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")


def key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_key(pem: str, passphrase: str | None = None, *, trusted: bool = False) -> PrivateKey:
    """Raises ``ValueError`` for anything but an RSA or EC private key in PEM.

    ``trusted``: a key the simulation made itself; skips OpenSSL's RSA consistency check,
    which costs ~30 ms per load (it would dominate a 1,000-node simulation).
    """
    key = serialization.load_pem_private_key(
        pem.encode(), passphrase.encode() if passphrase else None, unsafe_skip_rsa_key_validation=trusted
    )
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError("only RSA and ECDSA private keys are supported")
    return key


def fingerprint(public_key: Any) -> str:
    """SHA-256 of the SubjectPublicKeyInfo: equal for a key and every cert/CSR made from it."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def parse_dn(dn: str) -> list[x509.NameAttribute[str]]:
    """``"O=Example,OU=IT,C=GB"`` as name attributes. Raises ``ValueError`` naming the part."""
    attributes: list[x509.NameAttribute[str]] = []
    for part in (p.strip() for p in dn.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        oid = _DN_ATTRIBUTES.get(name.strip().upper())
        if not sep or oid is None or not value.strip():
            raise ValueError(f"{part!r} is not one of {', '.join(k + '=...' for k in _DN_ATTRIBUTES if k != 'CN')}")
        if oid == NameOID.COUNTRY_NAME and len(value.strip()) != 2:
            raise ValueError(f"country {value.strip()!r} must be a 2-letter code")
        attributes.append(x509.NameAttribute(oid, value.strip()))
    return attributes


def general_name(name: str) -> x509.GeneralName:
    """A subject alternative name: an IP address where ``name`` is one (a node named by its address), else DNS."""
    # Without a colon (IPv6) and with more than digits and dots (IPv4) it cannot be an address: no
    # ip_address() and its ValueError for every DNS name of every CSR and certificate (issue #11).
    if ":" in name or name.replace(".", "").isdigit():
        try:
            return x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            pass
    return x509.DNSName(name)


def san_names(extensions: x509.Extensions) -> list[str]:
    """The DNS names and IP addresses (as text) of a certificate's or CSR's subject alternative names."""
    try:
        sans = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*sans.get_values_for_type(x509.DNSName), *(str(a) for a in sans.get_values_for_type(x509.IPAddress))]


def make_csr(key: PrivateKey, subject_name: str, dn: str, sans: list[str], ad_compatible: bool) -> str:
    """A CSR for ``subject_name`` (CN, also the first SAN) that asks for server and client
    authentication, as the Management Node's CSR generator always does."""
    names = [subject_name] + [s for s in sans if s and s != subject_name]
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([*parse_dn(dn), x509.NameAttribute(NameOID.COMMON_NAME, subject_name)]))
        .add_extension(x509.SubjectAlternativeName([general_name(n) for n in dict.fromkeys(names)]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    )
    if ad_compatible:
        template = "WebServer".encode("utf-16-be")
        builder = builder.add_extension(
            x509.UnrecognizedExtension(_MS_TEMPLATE_OID, bytes([0x1E, len(template)]) + template), critical=False
        )
    pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    _signed_here(pem)
    return pem


# The SHA-256 of the CSR texts :func:`make_csr` made last in this process: their signature holds by construction, so
# :func:`load_csr` does not verify those very bytes again (issue #11: the CA twin's submit verified, ~85 us each, every
# CSR the Management API twin had just signed). Keyed by a digest of the whole text: any other text, a single byte
# changed, is verified as before. The last 256 (~25 KB): at 1000 nodes a CSR is submitted at most 31 CSRs after it was
# made; an older one is verified, as any other.
_SIGNED_HERE: dict[bytes, None] = {}
_SIGNED_HERE_MAX = 256


def _signed_here(pem: str) -> None:
    _SIGNED_HERE[hashlib.sha256(pem.encode()).digest()] = None
    if len(_SIGNED_HERE) > _SIGNED_HERE_MAX:
        del _SIGNED_HERE[next(iter(_SIGNED_HERE))]  # the oldest: a dict keeps the order of insertion


def load_csr(pem: str, *, trusted: bool = False) -> x509.CertificateSigningRequest:
    """Raises ``ValueError`` when ``pem`` is not a CSR with a valid signature.

    ``trusted``: a CSR whose signature was already checked (the simulated CA checks it when the CSR is
    submitted, then signs it later): the check, ~0.1 ms of the ~0.11 ms, is not made twice (issue #11).
    Neither is it made for the very text :func:`make_csr` made in this process (``_SIGNED_HERE``).
    """
    data = pem.encode()
    csr = x509.load_pem_x509_csr(data)
    if trusted or hashlib.sha256(data).digest() in _SIGNED_HERE:
        return csr  # checked before, or made by make_csr in this process (its signature holds)
    if not csr.is_signature_valid:
        raise ValueError("the CSR's signature does not verify")
    return csr


def csr_names(csr: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    """The CSR's common name and its subject alternative names (DNS names, IP addresses as text)."""
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    return cn, san_names(csr.extensions)


def load_certs(pem: str) -> list[x509.Certificate]:
    """Every certificate in a PEM text. Raises ``ValueError`` when there is none."""
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("no PEM certificate (-----BEGIN CERTIFICATE-----) found")
    return x509.load_pem_x509_certificates(pem.encode())


def issue_certificate(
    subject: x509.Name,
    public_key: Any,
    signer: PrivateKey,
    *,
    issuer: x509.Certificate | None = None,
    days: int = 365,
    ca: bool | None = None,
    sans: Sequence[x509.GeneralName] = (),
    usages: Sequence[x509.ObjectIdentifier] = (),
) -> x509.Certificate:
    """The one X.509 builder of the project: the simulated PKI's and the lab's certificates.

    A random serial, valid from five minutes ago (clock skew) for ``days``, signed with
    SHA-256 by ``signer``, of any key type ``new_key`` makes.

    Args:
        subject: the certificate's subject name.
        public_key: the subject's public key.
        signer: the issuer's private key (the subject's own when self-signed).
        issuer: the issuing CA's certificate; ``None``: self-signed (issuer = subject).
        ca: ``True``: a CA that signs end entities only (path length 0; certificate and CRL
            signing); ``False``: an end entity (CA:FALSE); both carry a subject key id, and
            an issued one the issuer's key id. ``None``: none of these extensions (the bare
            self-signed certificate a freshly installed node ships with).
        sans: subject alternative names (DNS names, IP addresses).
        usages: extended key usages (``ExtendedKeyUsageOID.SERVER_AUTH``, ...).

    Example::

        key = new_key("ECDSAP256")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
        root = issue_certificate(name, key.public_key(), key, ca=True, days=3650)
    """
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    authority = _authority(issuer) if issuer is not None else None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority[0] if authority is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        if authority is not None:
            builder = builder.add_extension(authority[1], critical=False)
    return builder.sign(signer, hashes.SHA256())


@functools.lru_cache(maxsize=8)
def _authority(issuer: x509.Certificate) -> tuple[x509.Name, x509.AuthorityKeyIdentifier]:
    """An issuer's name and key id: read once per CA, not once per certificate it signs (issue #11)."""
    key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return issuer.subject, key_id


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_root(common_name: str, key_type: str = "RSA2048") -> tuple[str, str]:
    """A self-signed test CA (RSA 2048 unless ``key_type`` says otherwise): ``(key PEM, certificate PEM)``."""
    key = new_key(key_type)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Simulated"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    return key_pem(key), _pem(issue_certificate(name, key.public_key(), key, ca=True, days=3650))


@functools.lru_cache(maxsize=8)
def _issuer(ca_key_pem: str, ca_cert_pem: str) -> tuple[PrivateKey, x509.Certificate]:
    return load_key(ca_key_pem, trusted=True), load_certs(ca_cert_pem)[0]


def sign_csr(csr_pem: str, ca_key_pem: str, ca_cert_pem: str, days: int = 365, *, trusted: bool = False) -> str:
    """A server+client-auth leaf certificate for the CSR, SANs copied from it (``trusted``: see :func:`load_csr`).

    The SANs are the CSR's DNS names, then its IP addresses (:func:`san_names`' order), copied as they are
    rather than through their text (issue #11); without any, the CSR's common name.
    """
    csr = load_csr(csr_pem, trusted=trusted)
    ca_key, ca_cert = _issuer(ca_key_pem, ca_cert_pem)
    subject = csr.subject
    try:
        requested = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        requested = []
    sans: list[x509.GeneralName] = [n for n in requested if isinstance(n, x509.DNSName)]
    sans += [n for n in requested if isinstance(n, x509.IPAddress)]
    if not sans:
        cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        sans = [general_name(str(cns[0].value) if cns else "")]
    return _pem(
        issue_certificate(
            subject,
            csr.public_key(),
            ca_key,
            issuer=ca_cert,
            days=days,
            ca=False,
            sans=sans,
            usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        )
    )


def self_signed(common_name: str, key: PrivateKey, days: int = 3650) -> str:
    """The kind of temporary certificate a freshly installed node ships with."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return _pem(issue_certificate(name, key.public_key(), key, days=days, sans=[x509.DNSName(common_name)]))


def _name_hash(name: x509.Name) -> str:
    return hashlib.sha1(name.public_bytes()).hexdigest()[:8]


def _key_id(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> str:
    try:
        value: x509.ExtensionType = cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return ""
    raw = getattr(value, "digest", None) or getattr(value, "key_identifier", None) or b""
    return raw.hex(":").upper()


def certificate_fields(cert: x509.Certificate) -> dict[str, Any]:
    """The read-only metadata fields the API shows for a TLS or CA certificate."""
    subject_name, issuer_name = cert.subject, cert.issuer
    cns = subject_name.get_attributes_for_oid(NameOID.COMMON_NAME)
    sans = san_names(cert.extensions)
    try:
        ekus = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        ekus = set()
    # Each name's text made once (~4 us each, four fields show them; issue #11).
    subject, issuer = subject_name.rfc4514_string(), issuer_name.rfc4514_string()
    return {
        "subject_name": str(cns[0].value) if cns else subject,
        "subject_hash": _name_hash(subject_name),
        "subject_alt_names": ", ".join(sans),
        "issuer_name": issuer,
        "issuer_hash": _name_hash(issuer_name),
        "raw_subject": subject,
        "raw_issuer": issuer,
        "serial_no": format(cert.serial_number, "x"),
        "start_date": cert.not_valid_before_utc.isoformat(),
        "end_date": cert.not_valid_after_utc.isoformat(),
        "key_id": _key_id(cert, x509.SubjectKeyIdentifier),
        "issuer_key_id": _key_id(cert, x509.AuthorityKeyIdentifier),
        "server_auth_usage": ExtendedKeyUsageOID.SERVER_AUTH in ekus,
        "client_auth_usage": ExtendedKeyUsageOID.CLIENT_AUTH in ekus,
        "text": f"Subject: {subject}\nIssuer: {issuer}\nSerial: {cert.serial_number:x}",
    }
