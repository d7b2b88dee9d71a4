"""The simulated LDAP directory: the directory the deployment declares, and nothing else.

Every ``ldap.role_mappings[*].group_dn`` exists; ``ldap.verify_user`` exists and is a
member of every mapped group; the service account ``ldap.bind_username`` binds with
``ldap.bind_password``. The simulated Management Node (:mod:`adapters.sim.pexip`) is handed
a ``Directory`` (this twin or a real one) and asks it for the groups of the user who logs in,
so the login follows whichever directory the run uses.
"""

from __future__ import annotations

from adapters.sim.world import SimWorld
from config.errors import Rejected
from config.model import Deployment, LdapSpec

__all__ = ["SimDirectory", "directory_groups", "user_groups_of"]

_SYSTEM = "ldap"


def directory_groups(ldap: LdapSpec) -> list[str]:
    """DNs of the groups the simulated directory holds (those the role mappings name)."""
    return list(dict.fromkeys(m.group_dn for m in ldap.role_mappings))


def _same_user(ldap: LdapSpec, user: str) -> bool:
    wanted = ldap.verify_user.strip().lower()
    given = user.strip().lower()
    if not wanted or not given:
        return False
    # A login may name the user as uid, as uid@domain (UPN) or as a DN starting uid=/cn=.
    for form in (given, given.split("@", 1)[0]):
        if form == wanted or form.startswith((f"uid={wanted},", f"cn={wanted},")):
            return True
    return False


def user_groups_of(ldap: LdapSpec, user: str) -> list[str]:
    """The groups ``user`` belongs to: every mapped group for the verify user, else none."""
    return directory_groups(ldap) if _same_user(ldap, user) else []


class SimDirectory:
    """Twin of :class:`adapters.base.Directory` over the deployment's declared directory."""

    def __init__(self, world: SimWorld, deployment: Deployment):
        self._world = world
        self._ldap = deployment.ldap
        self._permit_plain = deployment.policy.authentication.ldap_permit_no_tls

    async def verify_bind(self) -> None:
        """Bind as the service account; ``Rejected`` when its password cannot be read, or when
        ``ldap.transport`` is ``plain`` and the policy does not permit LDAP without TLS."""
        await self._world.call(_SYSTEM, "bind", change=False)
        ldap = self._ldap
        if ldap.transport == "plain" and not self._permit_plain:
            raise Rejected(
                "ldap.transport 'plain' would send the password without TLS, which the policy forbids "
                "(authentication.ldap_permit_no_tls = false); use 'starttls' or 'ldaps'",
                system=_SYSTEM,
            )
        if not ldap.bind_username:
            raise Rejected("ldap.bind_username is empty: set the service account's DN or name", system=_SYSTEM)
        if ldap.bind_password is None:
            raise Rejected(
                f"bind as {ldap.bind_username} refused (result 49, invalid credentials): ldap.bind_password is not set",
                system=_SYSTEM,
            )
        missing = ldap.bind_password.available()
        if missing:
            raise Rejected(
                f"bind as {ldap.bind_username} refused (result 49): ldap.bind_password "
                f"{ldap.bind_password.ref} cannot be read ({missing})",
                system=_SYSTEM,
            )
        ldap.bind_password.reveal()  # registers the value with the redactor, as a real bind would

    async def group_exists(self, dn: str) -> bool:
        await self._world.call(_SYSTEM, f"search {dn}", change=False)
        return dn.strip().lower() in {g.lower() for g in directory_groups(self._ldap)}

    async def user_groups(self, user: str) -> list[str]:
        """DNs of the groups ``user`` is a member of (none for an unknown user)."""
        await self._world.call(_SYSTEM, f"search groups of {user}", change=False)
        return user_groups_of(self._ldap, user)

    async def aclose(self) -> None:
        """Nothing to release: the directory is the deployment's declaration."""

    async def __aenter__(self) -> SimDirectory:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
