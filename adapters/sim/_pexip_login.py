"""Who can log in to the simulated Management Node: the login model of the Pexip twin.

The local admin logs in with the password the installation wizard set; an LDAP user logs
in when ``authentication/1/`` points at the deployment's directory with the service
account's credentials, and the directory the twin was handed (the ``Directory`` adapter,
real or simulated) puts the user in a group that an ``ldap_role`` or ``role_mapping`` maps
to a role with the API permission. The twin asks that directory, never a copy of its own.

A Manager binds to LDAP on every request an LDAP user makes (pexip-api.md 1 and 7.5): a login
(:meth:`Logins.ldap_login`) asks the directory then and there, never a cached answer, and
:attr:`Logins.binds` counts those binds (the lab's server shows them per request, ``bench/ldap_bench.py``).
"""

from __future__ import annotations

from typing import Any

from adapters.base import Directory
from adapters.sim._manager import stored
from adapters.sim._pexip_schema import PERMISSIONS, parse_uri, uri_of
from adapters.sim.world import CONSOLE, SimWorld, digest, pexip_system
from config.errors import AdapterError
from config.model import Deployment

__all__ = ["Logins", "WATCHED"]

# The world systems whose changes can change who logs in.
WATCHED = (
    pexip_system("authentication"),
    pexip_system("ldap_role"),
    pexip_system("role_mapping"),
    pexip_system("role"),
    CONSOLE,
)


class Logins:
    """Who can log in now, worked out from the world and the directory.

    The answer is cached until authentication, the roles, their mappings or the console
    change; the directory is asked again on the next login after such a change.

    Args:
        answer_when_down: a directory that cannot be asked makes the LDAP half refuse (not cached) instead of
            raising, so the local admin still gets in: what the lab's server, a Manager on the wire, does.
    """

    def __init__(
        self, world: SimWorld, deployment: Deployment, directory: Directory, *, answer_when_down: bool = False
    ):
        self._world = world
        self._answer_when_down = answer_when_down
        self.binds = 0  # LDAP logins, each one bind as a Manager makes it (ldap_login)
        self._deployment = deployment
        self._directory = directory
        self._manager = deployment.management.name
        self._cache: tuple[int, dict[str, Any]] | None = None
        self._secret_digests: dict[str, str | None] = {}

    async def current(self) -> dict[str, Any]:
        """``source``, ``sources``, ``client_certificate``, ``local_why``, ``ldap_roles``,
        ``ldap_why`` and ``identities`` (who of the orchestrator can log in).

        Raises:
            AdapterError: the directory's own error when it cannot be asked (not cached).
        """
        versions = self._world.stamp(WATCHED)
        if self._cache is not None and self._cache[0] == versions:
            return self._cache[1]
        auth = self._world.get(pexip_system("authentication"), "1") or stored("authentication", 1, {})
        sources = set(auth["source"].split("+"))
        cert = auth["client_certificate"]
        local_why = self._local_admin_refusal(sources, cert)
        try:
            ldap_roles, ldap_why = await self._ldap_roles(auth, sources, self._deployment.ldap.verify_user)
        except AdapterError as exc:
            if not self._answer_when_down:
                raise
            down = {"sources": sources, "client_certificate": cert, "local_why": local_why, "source": auth["source"]}
            return {
                **down,
                "ldap_roles": [],
                "ldap_why": _down(exc),
                "identities": [] if local_why else ["local admin"],
            }
        identities = []
        if not local_why:
            identities.append("local admin")
        if ldap_roles:
            identities.append("LDAP user with client certificate" if cert != "NO" else "LDAP user")
        result = {
            "source": auth["source"],
            "sources": sources,
            "client_certificate": cert,
            "local_why": local_why,
            "ldap_roles": ldap_roles,
            "ldap_why": ldap_why,
            "identities": identities,
        }
        self._cache = (versions, result)
        return result

    def cached(self, answer: dict[str, Any]) -> bool:
        """``answer`` (of :meth:`current`) is kept until a watched system changes: not a directory-down answer."""
        return self._cache is not None and self._cache[1] is answer

    async def ldap_login(self, user: str | None = None) -> tuple[list[str], str]:
        """One LDAP login of ``user`` (default ``ldap.verify_user``) as a Manager makes it on each request: the
        directory asked now (one bind, counted in :attr:`binds`), never a cached answer.

        Returns:
            the names of the roles granted (none: refused) and, when refused, why.
        """
        auth = self._world.get(pexip_system("authentication"), "1") or stored("authentication", 1, {})
        sources = set(auth["source"].split("+"))
        if "LDAP" not in sources:
            return [], "the authentication source does not include LDAP"
        self.binds += 1
        try:
            return await self._ldap_roles(auth, sources, user or self._deployment.ldap.verify_user)
        except AdapterError as exc:
            if not self._answer_when_down:
                raise
            return [], _down(exc)

    def _local_admin_refusal(self, sources: set[str], cert: str) -> str:
        if "LOCAL" not in sources:
            return "the authentication source does not include LOCAL"
        if cert != "NO":
            return f"client_certificate is {cert}: the standard login page is no longer presented"
        spec = self._deployment.pexip_api
        stored_digest = (self._world.get(CONSOLE, self._manager) or {}).get("admin_password_sha256")
        if spec.admin_password is None:
            return "pexip_api.admin_password is not set"
        if self._digest_of("admin", spec.admin_password) != stored_digest:
            return (
                f"pexip_api.admin_password ({spec.admin_password.ref}) is not the password the installation wizard set"
            )
        return ""

    async def _ldap_roles(self, auth: dict[str, Any], sources: set[str], user: str) -> tuple[list[str], str]:
        if "LDAP" not in sources:
            return [], "the authentication source does not include LDAP"
        ldap = self._deployment.ldap
        if auth["ldap_server"].lower() != ldap.server.lower():
            return [], f"authentication.ldap_server is {auth['ldap_server']!r}, the directory is at {ldap.server!r}"
        if auth["ldap_base_dn"].lower() != ldap.base_dn.lower():
            return [], f"authentication.ldap_base_dn is {auth['ldap_base_dn']!r}, the directory's is {ldap.base_dn!r}"
        if auth["ldap_bind_username"] != ldap.bind_username:
            return [], f"authentication.ldap_bind_username {auth['ldap_bind_username']!r} cannot bind"
        bind = (auth.get("_secrets") or {}).get("ldap_bind_password")
        if ldap.bind_password is None or bind is None or bind != self._digest_of("bind", ldap.bind_password):
            return [], "authentication.ldap_bind_password is not the service account's password"
        # The Management Node binds as the service account and searches the user's groups.
        groups = {g.lower() for g in await self._directory.user_groups(user)}
        if not groups:
            return [], f"user {user!r} is not in the directory (or in none of its groups)"
        role_uris: set[str] = set()
        for _, mapping in self._world.items(pexip_system("ldap_role")):
            if mapping["ldap_group_dn"].lower() in groups:
                role_uris.update(mapping["roles"])
        for _, mapping in self._world.items(pexip_system("role_mapping")):
            if mapping["source"] == "LDAP" and mapping["value"].lower() in groups:
                role_uris.update(mapping["roles"])
        roles = [self._world.get(pexip_system("role"), parse_uri(u)[1]) for u in sorted(role_uris)]
        roles = [r for r in roles if r is not None]
        if not roles:
            return [], f"no ldap_role maps a group of {user!r} to a role"
        api = uri_of("permission", dict((n, i) for i, (n, _) in enumerate(PERMISSIONS, 1))["May use API"])
        if not any(api in r["permissions"] for r in roles):
            return [], f"roles {', '.join(r['name'] for r in roles)} lack the permission 'May use API'"
        return sorted(r["name"] for r in roles), ""

    def _digest_of(self, name: str, secret: Any) -> str | None:
        if name not in self._secret_digests:
            try:
                self._secret_digests[name] = digest(secret.reveal())
            except (KeyError, OSError):
                self._secret_digests[name] = None
        return self._secret_digests[name]


def _down(exc: AdapterError) -> str:
    return f"the Management Node cannot bind to the LDAP server: {exc}"
