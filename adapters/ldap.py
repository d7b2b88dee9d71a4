"""The real LDAP directory: ldap3 over StartTLS, each call in a worker thread.

What the orchestrator asks of the directory before it points the Management Node at it
(issue #9): that the service account binds, that the base DN and the search DNs exist, that
each mapped group exists, and which groups a user is in, found the way the Manager finds
them (its default group and membership filters, pexip-api.md 7.16), so that a login the
orchestrator predicts is a login the Manager grants.

    async with LdapDirectory.from_deployment(deployment) as directory:
        await directory.verify_bind()
        groups = await directory.user_groups(deployment.ldap.verify_user)

Transport: StartTLS on ``ldap.port``, always, the server's certificate verified against
``ldap.ca_file`` (else the system's CAs) and its name against ``ldap.server``. There is no
plain fallback: the guide's floor forbids LDAP queries over an insecure connection, and a
server that does not offer StartTLS is refused. ldap3 is synchronous, so every operation
runs in ``asyncio.to_thread`` on one connection, kept bound and guarded by a lock.
ldap3's exceptions are translated once, in :func:`map_ldap3_errors`; the service account's
password never reaches a message (only its reference does).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Literal, TypeVar

from ldap3 import BASE, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core import exceptions as lx
from ldap3.utils.conv import escape_filter_chars

from config.errors import AdapterError, Rejected, Timeout, Unreachable
from config.model import Deployment, LdapSpec
from config.secrets import REDACTOR

__all__ = [
    "LdapDirectory",
    "map_ldap3_errors",
    "GROUP_FILTER",
    "MEMBERSHIP_FILTER",
    "USER_FILTER",
    "USER_SEARCH_FILTER",
]

SYSTEM = "ldap"
T = TypeVar("T")

# The Management Node's default group and membership filters (pexip-api.md 7.16): the
# orchestrator resolves a user's groups exactly as the Manager will.
GROUP_FILTER = (
    "(|(objectclass=group)(objectclass=groupOfNames)(objectclass=groupOfUniqueNames)(objectclass=posixGroup))"
)
MEMBERSHIP_FILTER = "(|(member={userdn})(uniquemember={userdn})(memberuid={useruid}))"
# A user by name: OpenLDAP's uid or Active Directory's sAMAccountName (and userPrincipalName for a
# UPN). No "(!(objectclass=computer))": OpenLDAP, which has no such class, finds no one with it
# (the negation of an undefined assertion is undefined); AD computer names end in "$" anyway.
USER_FILTER = "(objectclass=person)"
USER_SEARCH_FILTER = "(|(uid={username})(sAMAccountName={username}))"
_PAGE = 500  # entries per page of a search (Active Directory answers at most 1000)
_PAGED_RESULTS = "1.2.840.113556.1.4.319"


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
    except (lx.LDAPStartTLSError, lx.LDAPCertificateError) as exc:
        cause = _ssl_cause(exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise Rejected(
                f"{what}: the TLS certificate of {where} is not trusted ({cause.verify_message}); set "
                f"ldap.ca_file to the CA that signed it (now {ldap.ca_file or 'the system CAs'})",
                system=SYSTEM,
            ) from exc
        if isinstance(exc, lx.LDAPCertificateError) or isinstance(cause, ssl.CertificateError):
            raise Rejected(
                f"{what}: the TLS certificate of {where} is not valid for the name {ldap.server!r}; set "
                "ldap.server to a name its certificate carries",
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


def _under(relative: str, base_dn: str) -> str:
    """The Manager's user and group search DNs are relative to its base DN."""
    return f"{relative},{base_dn}" if relative else base_dn


class LdapDirectory:
    """The real :class:`adapters.base.Directory`: a directory server over StartTLS.

    Args:
        ldap: the deployment's ``[ldap]`` section.
        timeout_s: for connecting and for each answer.
    """

    def __init__(self, ldap: LdapSpec, *, timeout_s: float = 10.0) -> None:
        self._ldap = ldap
        self._timeout = timeout_s
        self._lock = threading.Lock()  # one operation at a time on the one connection
        self._conn: Connection | None = None
        self._tls: Tls | None = None

    @classmethod
    def from_deployment(cls, deployment: Deployment, **kwargs: Any) -> LdapDirectory:
        return cls(deployment.ldap, **kwargs)

    def __repr__(self) -> str:  # never the password: the Secret's own repr is its reference
        return f"LdapDirectory({self._ldap.server}:{self._ldap.port}, bind={self._ldap.bind_username!r})"

    # --- the Directory protocol ----------------------------------------------------------

    async def verify_bind(self) -> None:
        """Bind as the service account over StartTLS, on a new connection; then check that the
        base DN and the user and group search DNs exist.

        Raises:
            Rejected: the password is not set or unreadable, the bind is refused (result 49),
                the certificate is not trusted (``ldap.ca_file``), a DN does not exist.
            Unreachable: the server cannot be reached (retryable).
        """
        await asyncio.to_thread(self._verify_bind)

    async def group_exists(self, dn: str) -> bool:
        """Whether ``dn`` is a group entry (DNs compare as LDAP compares them: case-insensitively)."""
        return await asyncio.to_thread(self._with_connection, f"look up group {dn}", lambda c: self._is_group(c, dn))

    async def user_groups(self, user: str) -> list[str]:
        """DNs of the groups ``user`` is a member of (none for an unknown user).

        ``user`` is a DN, a user name (``uid`` or ``sAMAccountName``) or a UPN ``name@domain``,
        found under ``ldap.user_search_dn`` with the Manager's filters; the groups under
        ``ldap.group_search_dn``.

        Raises:
            Rejected: the name matches more than one user (the Manager would refuse the login).
        """
        return await asyncio.to_thread(
            self._with_connection, f"find the groups of {user}", lambda c: self._groups(c, user)
        )

    async def aclose(self) -> None:
        """Unbind and close the connection, if one is open; idempotent."""
        await asyncio.to_thread(self._close)

    async def __aenter__(self) -> LdapDirectory:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- in the worker thread --------------------------------------------------------------

    def _password(self, what: str) -> str:
        ldap = self._ldap
        if not ldap.bind_username:
            raise Rejected(f"{what}: ldap.bind_username is empty: set the service account's DN or name", system=SYSTEM)
        if ldap.bind_password is None:
            raise Rejected(
                f"{what}: bind as {ldap.bind_username} refused (result 49, invalid credentials): "
                "ldap.bind_password is not set",
                system=SYSTEM,
            )
        try:
            password = ldap.bind_password.reveal()
        except (KeyError, OSError) as exc:
            raise Rejected(
                f"{what}: bind as {ldap.bind_username} refused (result 49): ldap.bind_password "
                f"{ldap.bind_password.ref} cannot be read ({type(exc).__name__})",
                system=SYSTEM,
            ) from exc
        if not password:
            # A simple bind with an empty password is an anonymous bind that "succeeds" (RFC 4513 5.1.2).
            raise Rejected(
                f"{what}: ldap.bind_password {ldap.bind_password.ref} is empty: an empty password would bind "
                "anonymously; give the service account's password",
                system=SYSTEM,
            )
        return password

    def _tls_settings(self) -> Tls:
        if self._tls is None:
            ca_file = self._ldap.ca_file
            try:  # a clear error for an unreadable or non-PEM CA file, before any connection
                ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise Rejected(
                    f"ldap.ca_file {ca_file} cannot be used ({exc}); give a PEM file of the CA that signed the LDAP "
                    "server's certificate",
                    system=SYSTEM,
                ) from exc
            server = self._ldap.server
            self._tls = Tls(
                ca_certs_file=ca_file,
                validate=ssl.CERT_REQUIRED,
                sni=None if _is_ip(server) else server,
            )
        return self._tls

    def _connect(self, what: str) -> Connection:
        """A new connection: TCP, StartTLS, bind as the service account."""
        ldap = self._ldap
        password = self._password(what)
        tls = self._tls_settings()
        with map_ldap3_errors(what, ldap):
            server = Server(
                ldap.server, port=ldap.port, use_ssl=False, tls=tls, get_info=NONE, connect_timeout=self._timeout
            )
            conn = Connection(
                server,
                user=ldap.bind_username,
                password=password,
                raise_exceptions=True,
                receive_timeout=max(1, math.ceil(self._timeout)),  # ldap3 packs it as whole seconds
                read_only=True,
            )
            try:
                conn.open(read_server_info=False)
                # Without it the first operation after a TLS 1.3 handshake stalls ~40 ms (Nagle
                # and delayed ACK on the session tickets): test-peers.md.
                conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    conn.start_tls(read_server_info=False)
                except lx.LDAPOperationResult as exc:  # the server said no to StartTLS itself
                    raise lx.LDAPStartTLSError(f"{exc.description} (result {exc.result})") from exc
                if not conn.tls_started:
                    raise Rejected(
                        f"{what}: StartTLS with {ldap.server}:{ldap.port} did not start; refusing to bind without TLS",
                        system=SYSTEM,
                    )
                conn.bind(read_server_info=False)
            except BaseException:
                _quietly_close(conn)
                raise
        return conn

    def _verify_bind(self) -> None:
        what = f"bind as {self._ldap.bind_username}"
        conn = self._connect(what)
        try:
            ldap = self._ldap
            with map_ldap3_errors(what, ldap):
                for field, dn in (
                    ("ldap.base_dn", ldap.base_dn),
                    ("ldap.user_search_dn", _under(ldap.user_search_dn, ldap.base_dn)),
                    ("ldap.group_search_dn", _under(ldap.group_search_dn, ldap.base_dn)),
                ):
                    if not _exists(conn, dn, "(objectclass=*)"):
                        raise Rejected(
                            f"{field}: {dn} does not exist in the directory at {ldap.server}, or the service account "
                            f"{ldap.bind_username} cannot read it; fix {field}",
                            system=SYSTEM,
                        )
        except BaseException:
            _quietly_close(conn)
            raise
        with self._lock:  # the proven connection serves the next calls
            old, self._conn = self._conn, conn
        if old is not None:
            _quietly_close(old)

    def _with_connection(self, what: str, operation: Callable[[Connection], T]) -> T:
        """``operation`` on the bound connection; once more on a new one if the old one was lost
        (a server restarted, or closed an idle connection: LDAP servers do)."""
        with self._lock:
            for attempt in (1, 2):
                fresh = self._conn is None
                if self._conn is None:
                    self._conn = self._connect(what)
                conn = self._conn
                try:
                    with map_ldap3_errors(what, self._ldap):
                        return operation(conn)
                except Unreachable:
                    self._conn = None
                    _quietly_close(conn)
                    if fresh or attempt == 2:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover: the loop returns or raises

    def _is_group(self, conn: Connection, dn: str) -> bool:
        return _exists(conn, dn, GROUP_FILTER)

    def _groups(self, conn: Connection, user: str) -> list[str]:
        ldap = self._ldap
        found = self._find_user(conn, user)
        if found is None:
            return []
        dn, uid = found
        membership = MEMBERSHIP_FILTER.replace("{userdn}", escape_filter_chars(dn)).replace(
            "{useruid}", escape_filter_chars(uid)
        )
        entries = _search(conn, _under(ldap.group_search_dn, ldap.base_dn), f"(&{GROUP_FILTER}{membership})", [])
        return [entry_dn for entry_dn, _ in entries]

    def _find_user(self, conn: Connection, user: str) -> tuple[str, str] | None:
        """The DN and ``uid`` of ``user``, or None when the directory has no such user."""
        ldap, given = self._ldap, user.strip()
        if not given:
            return None
        if "=" in given:  # a DN: the entry itself, if it is a user
            entries = _search(conn, given, USER_FILTER, ["uid"], scope=BASE)
        else:
            forms = dict.fromkeys((given, given.split("@", 1)[0]))
            alternatives = "".join(USER_SEARCH_FILTER.replace("{username}", escape_filter_chars(f)) for f in forms)
            if "@" in given:
                alternatives += f"(userPrincipalName={escape_filter_chars(given)})"
            search = f"(&{USER_FILTER}(|{alternatives}))"
            entries = _search(conn, _under(ldap.user_search_dn, ldap.base_dn), search, ["uid"])
        if not entries:
            return None
        if len(entries) > 1:
            raise Rejected(
                f"user {user!r} matches {len(entries)} entries in the directory ({', '.join(d for d, _ in entries)}); "
                "the Manager would refuse such a login: make the name unique",
                system=SYSTEM,
            )
        dn, attributes = entries[0]
        uids = attributes.get("uid") or [given.split("@", 1)[0]]
        return dn, str(uids[0])

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            _quietly_close(conn)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def _exists(conn: Connection, dn: str, search_filter: str) -> bool:
    """Whether the entry ``dn`` exists and matches ``search_filter`` (a base search)."""
    return bool(_search(conn, dn, search_filter, [], scope=BASE))


def _search(
    conn: Connection,
    base: str,
    search_filter: str,
    attributes: list[str],
    *,
    scope: Literal["BASE", "LEVEL", "SUBTREE"] = SUBTREE,
) -> list[tuple[str, dict[str, Any]]]:
    """Every ``(dn, attributes)`` found, page by page; an absent base is no entries."""
    found: list[tuple[str, dict[str, Any]]] = []
    cookie: bytes | None = None
    while True:
        try:
            conn.search(
                base, search_filter, search_scope=scope, attributes=attributes, paged_size=_PAGE, paged_cookie=cookie
            )
        except (lx.LDAPNoSuchObjectResult, lx.LDAPInvalidDNSyntaxResult):
            return []
        found.extend(
            (e["dn"], dict(e.get("attributes") or {})) for e in conn.response or [] if e["type"] == "searchResEntry"
        )
        controls = conn.result.get("controls") or {}
        cookie = controls.get(_PAGED_RESULTS, {}).get("value", {}).get("cookie")
        if not cookie:
            return found


def _quietly_close(conn: Connection) -> None:
    """Unbind and close; a connection already broken has nothing left to say."""
    with contextlib.suppress(lx.LDAPException, OSError):
        conn.unbind()
    # ldap3 leaves the socket of a connect that failed open (no unbind closes it): close it here.
    sock = getattr(conn, "socket", None)
    if isinstance(sock, socket.socket):
        sock.close()
