"""The TLS of every LDAP connection (StartTLS or ldaps): the chain and the server's name verified in the handshake.

ldap3's own ``Tls`` verifies the chain in the handshake but the name afterwards, with
``ssl.match_hostname`` (deprecated, gone in Python 3.12); when the name does not match it
raises before keeping the TLS socket, which stays open until the garbage collector finds it.
:class:`VerifiedTls` hands the whole check to Python's ``ssl`` (``check_hostname``), so a
mismatch fails the handshake like an untrusted chain and the socket is closed with it.

For ldaps, ldap3 re-creates the handshake's exception from its text (``type(e)(str(e))``), which
loses what the certificate check said; :meth:`VerifiedTls.wrap_socket` therefore keeps the
original on the connection (``tls_error_of``), for :func:`adapters.ldap._errors.map_ldap3_errors`.
"""

from __future__ import annotations

import ssl
from typing import Any

from ldap3 import Tls

from adapters.ldap._errors import SYSTEM
from config.errors import Rejected
from config.model import LdapSpec

__all__ = ["VerifiedTls", "tls_for", "tls_error_of"]

_ERROR = "_orchestrator_tls_error"


class VerifiedTls(Tls):
    """An ldap3 ``Tls`` over one ``ssl.SSLContext`` that verifies the chain and ``server_name``."""

    def __init__(self, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._context = context
        self._server_name = server_name

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        # Called by ldap3's StartTLS with do_handshake=True: the handshake (and with it every check)
        # happens here; on failure SSLSocket closes itself and ldap3 raises LDAPStartTLSError from it.
        try:
            connection.socket = self._context.wrap_socket(
                connection.socket,
                server_side=False,
                do_handshake_on_connect=do_handshake,
                server_hostname=self._server_name,  # SNI for a name (none for an address) and the name checked
            )
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            setattr(connection, _ERROR, exc)
            raise


def tls_error_of(connection: Any) -> BaseException | None:
    """The exception of the TLS handshake that failed on ``connection`` (an ldap3 Connection), if one did."""
    error = getattr(connection, _ERROR, None)
    return error if isinstance(error, BaseException) else None


def tls_for(ldap: LdapSpec) -> VerifiedTls:
    """The TLS settings for ``ldap``: ``ldap.ca_file`` (else the system's CAs), TLS 1.2 or later.

    Raises:
        Rejected: ``ldap.ca_file`` cannot be read or holds no certificate.
    """
    try:
        context = ssl.create_default_context(cafile=ldap.ca_file)  # CERT_REQUIRED, check_hostname
    except (OSError, ssl.SSLError) as exc:
        raise Rejected(
            f"ldap.ca_file {ldap.ca_file} cannot be used ({exc}); give a PEM file of the CA that signed the LDAP "
            "server's certificate",
            system=SYSTEM,
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return VerifiedTls(context, ldap.server)
