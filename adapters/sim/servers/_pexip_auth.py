"""Who the lab's Management API server lets in: a Manager's logins, decided live from ``authentication/1/``.

A real Manager takes (pexip-api.md 1 and 7.5):

- HTTP Basic as the local web administrator, while ``source`` includes ``LOCAL`` and no client
  certificate is required: the password is the one the installation wizard set (the world keeps
  its digest, never the value);
- HTTP Basic as an LDAP user, while ``source`` includes ``LDAP``: one bind per request, the directory
  asked on each (here the user must be ``ldap.verify_user`` with ``ldap.verify_password``, and the
  directory must put them in a group mapped to a role that may use the API);
- once ``client_certificate`` is ``CN`` or ``UPN``: the TLS client certificate instead of any
  Authorization header; its CN (or its subjectAltName userPrincipalName) names the LDAP user, whom the
  directory must know and map to such a role (asked on each request, like a Basic login).

A directory that does not answer refuses the LDAP logins only: the local admin still gets in where
the settings allow it.

The rules about roles and mappings are the twin's own (:class:`adapters.sim._pexip_login.Logins`),
so the server and the in-process twin cannot disagree about who can log in.
"""

from __future__ import annotations

import base64
import hmac
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.sim import _pki as pki
from adapters.sim._pexip_login import Logins
from adapters.sim.world import CONSOLE, SimWorld, digest
from config._x509 import UPN_OID, user_principal_names
from config.model import Deployment

__all__ = ["ClientIdentity", "login_refusal", "make_client_identity"]


@dataclass(frozen=True)
class ClientIdentity:
    """The lab's client-certificate login: the CA the server trusts, the certificate and its key (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_client_identity(directory: Path, user: str, mode: str = "CN") -> ClientIdentity:
    """A test CA and a client certificate naming ``user``: in its subject CN, or (``mode`` UPN) only in its
    userPrincipalName (the CN then names someone else), made once."""
    found = ClientIdentity(directory / "client-ca.pem", directory / "client.pem", directory / "client.key")
    if all(p.is_file() for p in (found.ca_file, found.cert_file, found.key_file)):
        return found
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = pki.new_key("ECDSAP256")
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lab client-certificate CA")])
    ca = pki.issue_certificate(ca_name, ca_key.public_key(), ca_key, ca=True)
    key = pki.new_key("ECDSAP256")
    upn = f"{user}@lab.example.com".encode()
    sans = [x509.OtherName(UPN_OID, b"\x0c" + bytes([len(upn)]) + upn)] if mode == "UPN" else []
    cert = pki.issue_certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user if mode != "UPN" else f"{user} (UPN)")]),
        key.public_key(),
        ca_key,
        issuer=ca,
        ca=False,
        sans=sans,
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    fd = os.open(found.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pki.key_pem(key))
    found.cert_file.write_bytes(cert.public_bytes(Encoding.PEM))
    found.ca_file.write_bytes(ca.public_bytes(Encoding.PEM))
    return found


async def login_refusal(
    logins: Logins, world: SimWorld, deployment: Deployment, authorization: str, peer: ssl.SSLObject | None
) -> str | None:
    """Why this request may not log in (``None``: it may). The reason never quotes a password."""
    auth = await logins.current()
    mode = auth["client_certificate"]
    ldap = deployment.ldap
    if mode != "NO":
        der = peer.getpeercert(binary_form=True) if peer is not None else None
        if not der:
            return (
                f"authentication.client_certificate is {mode}: a client certificate is required and none was presented"
            )
        identity = _identity(x509.load_der_x509_certificate(der), mode)
        if identity is None:
            return f"the client certificate names no one in its {'userPrincipalName' if mode == 'UPN' else 'CN'}"
        roles, why = await logins.ldap_login(identity)  # the Manager binds and asks the directory on every request
        return None if roles else f"LDAP login of {identity!r} (client certificate, {mode}) refused: {why}"
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return "Authentication credentials were not provided"
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "the Authorization header is not valid HTTP Basic"
    if user == deployment.pexip_api.admin_user:
        if "LOCAL" not in auth["sources"]:
            return f"local login refused: authentication.source is {auth['source']}"
        wanted = (world.get(CONSOLE, deployment.management.name) or {}).get("admin_password_sha256")
        return None if wanted and hmac.compare_digest(digest(password), wanted) else "invalid username or password"
    if user == ldap.verify_user and "LDAP" in auth["sources"]:
        secret = ldap.verify_password.reveal() if ldap.verify_password is not None else None
        if secret is None or not hmac.compare_digest(password.encode(), secret.encode()):
            return "LDAP bind refused: invalid username or password"
        roles, why = await logins.ldap_login(user)
        return None if roles else f"LDAP login of {user!r} refused: {why}"
    return "invalid username or password"


def _identity(cert: x509.Certificate, mode: str) -> str | None:
    if mode == "UPN":
        upns = user_principal_names(cert)
        return upns[0].partition("@")[0] if upns else None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else None
