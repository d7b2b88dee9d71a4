"""The real :class:`adapters.base.Directory`: one kept connection, StartTLS or ldaps, calls in worker threads."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from ldap3 import NONE, Connection, Server
from ldap3.core import exceptions as lx

from adapters.ldap._errors import SYSTEM, TlsHandshakeFailed, map_ldap3_errors
from adapters.ldap._search import GROUP_FILTER, exists, groups_of, quietly_close, under
from adapters.ldap._tls import VerifiedTls, tls_error_of, tls_for
from config.errors import Rejected, Unreachable
from config.model import Deployment, LdapSpec

__all__ = ["LdapDirectory"]

T = TypeVar("T")


class LdapDirectory:
    """The real :class:`adapters.base.Directory`: a directory server over StartTLS or ldaps.

    Args:
        ldap: the deployment's ``[ldap]`` section; ``ldap.transport`` says how to reach it.
        timeout_s: for connecting and for each answer.
        permit_plain: the policy's ``authentication.ldap_permit_no_tls``; without it a ``plain``
            transport is refused before anything is sent.
    """

    def __init__(self, ldap: LdapSpec, *, timeout_s: float = 10.0, permit_plain: bool = False) -> None:
        self._ldap = ldap
        self._timeout = timeout_s
        self._permit_plain = permit_plain
        self._lock = threading.Lock()  # one operation at a time on the one connection
        self._conn: Connection | None = None
        self._tls: VerifiedTls | None = None

    @classmethod
    def from_deployment(cls, deployment: Deployment, **kwargs: Any) -> LdapDirectory:
        kwargs.setdefault("permit_plain", deployment.policy.authentication.ldap_permit_no_tls)
        return cls(deployment.ldap, **kwargs)

    def __repr__(self) -> str:  # never the password: the Secret's own repr is its reference
        ldap = self._ldap
        return f"LdapDirectory({ldap.transport}://{ldap.server}:{ldap.port}, bind={ldap.bind_username!r})"

    # --- the Directory protocol ----------------------------------------------------------

    async def verify_bind(self) -> None:
        """Bind as the service account over TLS (StartTLS or ldaps), on a new connection; then check that the
        base DN and the user and group search DNs exist.

        Raises:
            Rejected: the password is not set or unreadable, the bind is refused (result 49),
                the certificate is not trusted (``ldap.ca_file``), a DN does not exist.
            Unreachable: the server cannot be reached (retryable).
        """
        await asyncio.to_thread(self._verify_bind)

    async def group_exists(self, dn: str) -> bool:
        """Whether ``dn`` is a group entry (DNs compare as LDAP compares them: case-insensitively)."""
        return await asyncio.to_thread(
            self._with_connection, f"look up group {dn}", lambda c: exists(c, dn, GROUP_FILTER)
        )

    async def user_groups(self, user: str) -> list[str]:
        """DNs of the groups ``user`` is a member of (none for an unknown user).

        ``user`` is a DN, a user name (``uid`` or ``sAMAccountName``) or a UPN ``name@domain``,
        found under ``ldap.user_search_dn`` with the Manager's filters; the groups under
        ``ldap.group_search_dn``.

        Raises:
            Rejected: the name matches more than one user (the Manager would refuse the login).
        """
        return await asyncio.to_thread(
            self._with_connection, f"find the groups of {user}", lambda c: groups_of(c, self._ldap, user)
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

    def _tls_settings(self) -> VerifiedTls:
        if self._tls is None:
            self._tls = tls_for(self._ldap)
        return self._tls

    def _connect(self, what: str) -> Connection:
        """A new connection: TCP, TLS (StartTLS, or ldaps from the first byte), bind as the service account."""
        ldap = self._ldap
        if ldap.transport == "plain" and not self._permit_plain:
            raise Rejected(
                f"{what}: ldap.transport 'plain' would send the password without TLS, which the policy forbids "
                "(authentication.ldap_permit_no_tls = false); use 'starttls' or 'ldaps'",
                system=SYSTEM,
            )
        password = self._password(what)
        ldaps = ldap.transport == "ldaps"
        tls = None if ldap.transport == "plain" else self._tls_settings()
        with map_ldap3_errors(what, ldap):
            server = Server(
                ldap.server, port=ldap.port, use_ssl=ldaps, tls=tls, get_info=NONE, connect_timeout=self._timeout
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
                try:
                    conn.open(read_server_info=False)
                except lx.LDAPSocketOpenError:
                    if (failed := tls_error_of(conn)) is not None:  # ldaps: the handshake itself failed
                        raise TlsHandshakeFailed(str(failed)) from failed
                    raise
                # Without it the first operation after a TLS 1.3 handshake stalls ~40 ms (Nagle
                # and delayed ACK on the session tickets): test-peers.md.
                conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if ldap.transport == "starttls":
                    self._start_tls(conn, what)
                conn.bind(read_server_info=False)
            except BaseException:
                quietly_close(conn)
                raise
        return conn

    def _start_tls(self, conn: Connection, what: str) -> None:
        ldap = self._ldap
        try:
            conn.start_tls(read_server_info=False)
        except lx.LDAPOperationResult as exc:  # the server said no to StartTLS itself
            raise lx.LDAPStartTLSError(f"{exc.description} (result {exc.result})") from exc
        if not conn.tls_started:
            raise Rejected(
                f"{what}: StartTLS with {ldap.server}:{ldap.port} did not start; refusing to bind without TLS",
                system=SYSTEM,
            )

    def _verify_bind(self) -> None:
        what = f"bind as {self._ldap.bind_username}"
        conn = self._connect(what)
        try:
            ldap = self._ldap
            with map_ldap3_errors(what, ldap):
                for field, dn in (
                    ("ldap.base_dn", ldap.base_dn),
                    ("ldap.user_search_dn", under(ldap.user_search_dn, ldap.base_dn)),
                    ("ldap.group_search_dn", under(ldap.group_search_dn, ldap.base_dn)),
                ):
                    if not exists(conn, dn, "(objectclass=*)"):
                        raise Rejected(
                            f"{field}: {dn} does not exist in the directory at {ldap.server}, or the service account "
                            f"{ldap.bind_username} cannot read it; fix {field}",
                            system=SYSTEM,
                        )
        except BaseException:
            quietly_close(conn)
            raise
        with self._lock:  # the proven connection serves the next calls
            old, self._conn = self._conn, conn
        if old is not None:
            quietly_close(old)

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
                    quietly_close(conn)
                    if fresh or attempt == 2:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover: the loop returns or raises

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            quietly_close(conn)
