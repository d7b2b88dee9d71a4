"""ldap3's exceptions, translated once onto ``config.errors`` (STYLE.md: ``map_<lib>_errors``)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator

from ldap3.core import exceptions as lx

from config.errors import AdapterError, Rejected, Timeout, Unreachable
from config.model import LdapSpec
from config.secrets import REDACTOR

__all__ = ["SYSTEM", "TlsHandshakeFailed", "map_ldap3_errors"]

SYSTEM = "ldap"
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: a trusted chain, another name.
_NAME_MISMATCH = (62, 64)


class TlsHandshakeFailed(lx.LDAPException):
    """The TLS handshake of an ldaps connection failed; ``__cause__`` is the handshake's own exception."""


def _ssl_cause(exc: BaseException) -> BaseException | None:
    """The ``ssl``/``OSError`` that ldap3 wrapped (it raises a new exception inside ``except``)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ssl.SSLError, ssl.CertificateError)) and not isinstance(seen, lx.LDAPException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def map_ldap3_errors(what: str, ldap: LdapSpec) -> Iterator[None]:
    """Re-raise ldap3, TLS and socket errors as ``config.errors`` types, ``from`` the original.

    ``what`` says what was being done ("bind as cn=..."); it starts the message.
    """
    where = f"LDAP server {ldap.server}:{ldap.port}"
    try:
        yield
    except AdapterError:
        raise
    except lx.LDAPInvalidCredentialsResult as exc:
        ref = ldap.bind_password.ref if ldap.bind_password is not None else "not set"
        raise Rejected(
            f"{what}: {where} refused the bind as {ldap.bind_username} (result 49, invalid credentials); "
            f"check ldap.bind_username and ldap.bind_password ({ref})",
            system=SYSTEM,
        ) from exc
    except (lx.LDAPStartTLSError, TlsHandshakeFailed) as exc:
        cause = _ssl_cause(exc)
        if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_code in _NAME_MISMATCH:
            raise Rejected(
                f"{what}: the TLS certificate of {where} is not valid for the name {ldap.server!r} "
                f"({cause.verify_message}); set ldap.server to a name its certificate carries",
                system=SYSTEM,
            ) from exc
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise Rejected(
                f"{what}: the TLS certificate of {where} is not trusted ({cause.verify_message}); set "
                f"ldap.ca_file to the CA that signed it (now {ldap.ca_file or 'the system CAs'})",
                system=SYSTEM,
            ) from exc
        if isinstance(exc, TlsHandshakeFailed):
            raise Unreachable(
                f"{what}: TLS with {where} failed ({cause or exc.__cause__}); ldap.transport 'ldaps' expects TLS from "
                "the first byte (usually port 636): for a server that offers StartTLS (port 389) set "
                "ldap.transport = 'starttls'",
                system=SYSTEM,
            ) from exc
        if cause is not None:
            raise Unreachable(f"{what}: TLS with {where} failed ({cause})", system=SYSTEM) from exc
        raise Rejected(
            f"{what}: {where} refused StartTLS ({exc}); the orchestrator never sends LDAP without TLS: "
            "enable StartTLS on the server, or fix ldap.server and ldap.port",
            system=SYSTEM,
        ) from exc
    except lx.LDAPSocketOpenError as exc:
        raise Unreachable(
            f"{what}: cannot connect to {where} ({exc}); check ldap.server and ldap.port, and that the server is up",
            system=SYSTEM,
        ) from exc
    except (lx.LDAPResponseTimeoutError, TimeoutError) as exc:
        raise Timeout(f"{what}: {where} did not answer in time", system=SYSTEM) from exc
    except lx.LDAPCommunicationError as exc:
        raise Unreachable(f"{what}: the connection to {where} was lost ({exc})", system=SYSTEM) from exc
    except lx.LDAPOperationResult as exc:
        message = REDACTOR.scrub_text(str(exc.message or ""))
        raise Rejected(
            f"{what}: {where} answered {exc.description} (result {exc.result}){': ' + message if message else ''}",
            system=SYSTEM,
        ) from exc
    except OSError as exc:
        raise Unreachable(f"{what}: cannot reach {where}: {type(exc).__name__}: {exc}", system=SYSTEM) from exc
    except lx.LDAPException as exc:  # the client refused what it was given (a DN, a filter): not retried
        raise Rejected(f"{what}: {where}: {type(exc).__name__}: {exc}", system=SYSTEM) from exc
