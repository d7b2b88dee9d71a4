"""What the simulated Management API stores for its objects: write-only values as digests,
CSRs with their keys, uploaded certificates checked against their keys (pexip-api.md 2.x)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.sim import _pki as pki
from adapters.sim._manager import COUNTERS, stored
from adapters.sim._pexip_schema import RESOURCES, api_error, parse_uri, validate
from adapters.sim.world import SimWorld, digest, pexip_system

__all__ = ["completed_csr", "new_certificate", "new_csr", "reject_field", "with_secrets"]


def with_secrets(resource: str, obj: dict[str, Any], clean: dict[str, Any]) -> dict[str, Any]:
    """``obj`` updated with ``clean``; write-only values kept only as digests."""
    fields = RESOURCES[resource].fields
    secrets = dict(obj.get("_secrets") or {})
    for name, value in clean.items():
        if fields[name].write_only:
            secrets[name] = digest(value) if isinstance(value, str) else None
        else:
            obj[name] = list(value) if isinstance(value, list) else value
    if secrets:
        obj["_secrets"] = secrets
    return obj


def new_csr(clean: dict[str, Any], ident: int, certificate: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """A CSR object: a new key (or the uploaded one, or a renewed certificate's), the CSR made with it."""
    key_type = clean.get("private_key_type", "RSA2048")
    if key_type == "UPLOAD":
        if not clean.get("private_key"):
            reject_field("certificate_signing_request", "private_key", "Required when private_key_type is UPLOAD.")
        try:
            key = pki.load_key(clean["private_key"], clean.get("private_key_passphrase"))
        except (ValueError, TypeError) as exc:
            reject_field("certificate_signing_request", "private_key", f"Not a usable RSA/ECDSA PEM key: {exc}")
    elif "private_key" in clean:
        reject_field("certificate_signing_request", "private_key", "Only used with private_key_type UPLOAD.")
    elif clean.get("tls_certificate"):
        # A renewal CSR reuses the existing certificate's key.
        existing = certificate(parse_uri(clean["tls_certificate"])[1])
        key = pki.load_key(existing["_key_pem"], trusted=True)
    else:
        key = pki.new_key(key_type)
    sans = [s.strip() for s in clean.get("additional_subject_alt_names", "").split(",") if s.strip()]
    try:
        csr = pki.make_csr(key, clean["subject_name"], clean.get("dn", ""), sans, clean.get("ad_compatible", False))
    except ValueError as exc:
        reject_field("certificate_signing_request", "dn", str(exc))
    clean = {k: v for k, v in clean.items() if k not in ("private_key", "private_key_passphrase", "certificate")}
    return stored(
        "certificate_signing_request",
        ident,
        {
            **clean,
            "csr": csr,
            "_key_pem": pki.key_pem(key),
            "_key_fingerprint": pki.fingerprint(key.public_key()),
        },
    )


def new_certificate(
    resource: str, clean: dict[str, Any], ident: int, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    try:
        certs = pki.load_certs(clean["certificate"])
    except ValueError as exc:
        reject_field(resource, "certificate", f"Not a PEM certificate: {exc}")
    extra: dict[str, Any] = {}
    if resource == "ca_certificate":
        if len(certs) != 1:
            reject_field(
                resource,
                "certificate",
                f"Upload one certificate per ca_certificate object (this PEM holds {len(certs)}).",
            )
        cert = certs[0]
    else:
        if "private_key" in clean:
            try:
                key = pki.load_key(clean["private_key"], clean.get("private_key_passphrase"))
            except (ValueError, TypeError) as exc:
                reject_field(resource, "private_key", f"Not a usable RSA/ECDSA PEM key: {exc}")
            fp = pki.fingerprint(key.public_key())
            extra = {"_key_pem": pki.key_pem(key), "_key_fingerprint": fp}
        else:
            fp = (base or {}).get("_key_fingerprint", "")
        pairs = [c for c in certs if pki.fingerprint(c.public_key()) == fp]
        if not pairs:
            reject_field(
                resource, "private_key", "Certificate and private key do not appear to be part of the same key pair"
            )
        cert = pairs[0]
    meta = pki.certificate_fields(cert)
    obj = with_secrets(
        resource,
        dict(base) if base else stored(resource, ident, {}),
        {k: v for k, v in clean.items() if k not in ("private_key", "private_key_passphrase")},
    )
    return {**obj, **meta, **extra}


def reject_field(resource: str, field: str, message: str) -> Any:
    raise api_error(400, f'{resource}: 400 {{"{field}": ["{message}"]}}')


def completed_csr(
    world: SimWorld,
    csr: dict[str, Any],
    fields: dict[str, Any],
    *,
    exists: Callable[[str], bool],
    next_id: Callable[[str], int],
) -> tuple[list[tuple[str, str, Any]], dict[str, Any]]:
    """A CSR completed with ``{"certificate": PEM}`` signed for its key: the world's changes (the certificate stored,
    the CSR gone) and the certificate object. A replacement (same subject and key) keeps its node assignments."""
    if set(fields) != {"certificate"}:
        raise api_error(
            400,
            f"certificate_signing_request {csr['id']}: 400 a CSR cannot be modified, only "
            'completed with {"certificate": PEM}; delete it and create a new one to change it',
        )
    validate("certificate_signing_request", fields, creating=False, exists=exists)
    try:
        certs = pki.load_certs(fields["certificate"])
    except ValueError as exc:
        reject_field("certificate_signing_request", "certificate", f"Not a PEM certificate: {exc}")
    match = [c for c in certs if pki.fingerprint(c.public_key()) == csr["_key_fingerprint"]]
    if not match:
        reject_field(
            "certificate_signing_request",
            "certificate",
            "Certificate and private key do not appear to be part of the same key pair",
        )
    meta = pki.certificate_fields(match[0])
    # A replacement (same subject and key) replaces the existing certificate and keeps
    # its node assignments, as the guide says.
    certs_system = pexip_system("tls_certificate")
    same_subject = [
        world.get(certs_system, k) for k in world.lookup(certs_system, "subject_name", meta["subject_name"])
    ]
    existing = [o for o in same_subject if o.get("_key_fingerprint") == csr["_key_fingerprint"]]
    changes: list[tuple[str, str, Any]] = []
    if existing:
        ident, nodes = existing[0]["id"], existing[0]["nodes"]
    else:
        ident, nodes = next_id("tls_certificate"), []
        changes.append((COUNTERS, "tls_certificate", ident + 1))
    cert = stored(
        "tls_certificate",
        ident,
        {
            **meta,
            "certificate": fields["certificate"],
            "nodes": nodes,
            "_key_pem": csr["_key_pem"],
            "_key_fingerprint": csr["_key_fingerprint"],
        },
    )
    changes += [
        (pexip_system("tls_certificate"), str(ident), cert),
        (pexip_system("certificate_signing_request"), str(csr["id"]), None),
    ]
    return changes, cert
