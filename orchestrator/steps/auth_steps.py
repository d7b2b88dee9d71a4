"""Administrator roles and authentication, in the guide's order, never locking anyone out.

Guide: "Configure administrator accounts and authentication settings". Each step
proves the next login works *before* it takes the old way away:
LDAP+local first, prove an LDAP login; require client certificates only once the
orchestrator's own certificate identity maps to Read-write (full administrative access); disable local
authentication only once that certificate login has worked.
"""

from __future__ import annotations

from typing import Any

from config.errors import Rejected
from orchestrator.steps._rest import (
    ensure_object,
    field_changes,
    find_one,
    load_schema,
    normalise,
    settable,
    singleton,
)
from orchestrator.steps.base import URI, Change, Step, StepContext

__all__ = [
    "AdministratorRoles",
    "LdapConnection",
    "LdapRoleMapping",
    "ClientCertificateAuth",
    "DisableLocalAuth",
    "final_authentication",
]

AUTH = f"{URI}authentication/1/"


def final_authentication(ctx: StepContext) -> tuple[str, str]:
    """The authentication source and client-certificate mode the run ends with: the guide's LDAP alone with
    client certificates (primary), or, for the fallback system (``profile = "contingency"``), LDAP and local
    with the local admin kept and no client certificate (the policy's ``[contingency]``)."""
    if ctx.deployment.profile == "contingency":
        return ctx.policy.contingency.authentication_source, ctx.policy.contingency.client_certificate
    return ctx.policy.authentication.final_source, ctx.deployment.ldap.client_certificate


async def _permission_uris(ctx: StepContext) -> dict[str, str]:
    return {p["name"]: p["resource_uri"] for p in await ctx.pexip.list_objects("permission")}


class AdministratorRoles(Step):
    """Read-only and Read-write lose "May view logs" and "May generate system snapshot"; Auditor is created."""

    name = "administrator_roles"
    reversible = True

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        api = ctx.pexip
        r = ctx.policy.roles
        names = [*r.edit, r.auditor_name]
        return {
            "permissions": await _permission_uris(ctx),
            "roles": {n: await find_one(api, "role", name=n) for n in names},
        }

    def _wanted(self, ctx: StepContext, observed: dict[str, Any]) -> dict[str, list[str]]:
        r = ctx.policy.roles
        perms = observed["permissions"]
        missing = [p for p in (*r.auditor_permissions, *r.remove_permissions) if p not in perms]
        if missing:
            raise Rejected(
                f"permission names not known to this Pexip version: {missing}; check config/secure-mode-policy.toml "
                "[roles]"
            )
        wanted: dict[str, list[str]] = {}
        removed = {perms[p] for p in r.remove_permissions}
        for name in r.edit:
            role = observed["roles"][name]
            if role is None:
                raise Rejected(f"the built-in role {name!r} does not exist on the Management Node")
            wanted[name] = sorted(set(normalise(role.get("permissions") or [])) - removed)
        wanted[r.auditor_name] = sorted(perms[p] for p in r.auditor_permissions)
        return wanted

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        changes = []
        for name, perms in self._wanted(ctx, observed).items():
            role = observed["roles"][name]
            have = None if role is None else normalise(role.get("permissions") or [])
            if have != perms:
                changes.append(Change(f"role[{name}].permissions", have, perms))
        return changes

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        for name, perms in self._wanted(ctx, observed).items():
            await ensure_object(ctx.pexip, "role", {"name": name}, {"permissions": perms})


class LdapConnection(Step):
    """LDAP server details, authentication source "LDAP database and local database"."""

    name = "ldap_connection"
    reversible = True

    def wanted(self, ctx: StepContext) -> dict[str, Any]:
        ldap = ctx.deployment.ldap
        return {
            "source": ctx.policy.authentication.initial_source,
            "ldap_server": ldap.server,
            "ldap_base_dn": ldap.base_dn,
            "ldap_bind_username": ldap.bind_username,
            "ldap_user_search_dn": ldap.user_search_dn,
            "ldap_group_search_dn": ldap.group_search_dn,
            "ldap_permit_no_tls": ctx.policy.authentication.ldap_permit_no_tls,
        }

    intent = wanted  # the plan shows these values before the step can observe

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        await load_schema(ctx, "authentication")
        return await singleton(ctx.pexip, "authentication")

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        wanted = settable(ctx, "authentication", "authentication", self.wanted(ctx))
        if observed.get("source") in ("LDAP",) and observed.get("client_certificate") not in (None, "NO"):
            wanted.pop("source")  # already past this step (a rewind must not re-enable local login)
        return field_changes("authentication", observed, wanted)

    async def apply(self, ctx: StepContext, observed: Any, changes: list[Change]) -> None:
        # Prove the directory accepts the service account before Pexip is told to use it.
        await ctx.systems.directory.verify_bind()
        password = ctx.deployment.ldap.bind_password
        fields = {c.field.split(".", 1)[1]: c.wanted for c in changes}
        if password is not None:
            fields["ldap_bind_password"] = password.reveal()
        await ctx.pexip.patch(AUTH, fields)


class LdapRoleMapping(Step):
    """Every administrator role mapped to at least one LDAP group; then prove an LDAP login."""

    name = "ldap_role_mapping"
    reversible = True

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        api = ctx.pexip
        roles = {r["name"]: r["resource_uri"] for r in await api.list_objects("role")}
        mappings = {m.name: await find_one(api, "ldap_role", name=m.name) for m in ctx.deployment.ldap.role_mappings}
        # The directory itself: a mapping to a group that is gone maps nobody (`audit` and drift see it).
        directory = ctx.systems.directory
        groups = {m.name: await directory.group_exists(m.group_dn) for m in ctx.deployment.ldap.role_mappings}
        return {"roles": roles, "mappings": mappings, "groups": groups}

    def _wanted(self, ctx: StepContext, observed: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out = {}
        for m in ctx.deployment.ldap.role_mappings:
            unknown = [r for r in m.roles if r not in observed["roles"]]
            if unknown:
                raise Rejected(
                    f"ldap.role_mappings[{m.name}].roles: roles {unknown} do not exist on the Management Node"
                )
            out[m.name] = {"ldap_group_dn": m.group_dn, "roles": sorted(observed["roles"][r] for r in m.roles)}
        return out

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        changes = [
            Change(f"ldap_group[{m.name}]", "not in the directory", m.group_dn)
            for m in ctx.deployment.ldap.role_mappings
            if not observed["groups"].get(m.name, True)
        ]
        for name, wanted in self._wanted(ctx, observed).items():
            current = observed["mappings"][name]
            changes += (
                [Change(f"ldap_role[{name}]", None, wanted)]
                if current is None
                else field_changes(f"ldap_role[{name}]", current, wanted)
            )
        return changes

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        directory = ctx.systems.directory
        for m in ctx.deployment.ldap.role_mappings:
            if not await directory.group_exists(m.group_dn):
                raise Rejected(f"ldap.role_mappings[{m.name}].group_dn: group {m.group_dn} is not in the directory")
        for name, wanted in self._wanted(ctx, observed).items():
            await ensure_object(ctx.pexip, "ldap_role", {"name": name}, wanted)
        # The guide's safety net: an LDAP login must work while local login still does.
        await ctx.pexip.verify_login(use_client_cert=False)


# The role that gives the orchestrator's own identity full administrative access. A new Manager
# has only Read-only and Read-write (pexip-api.md 7.1: no "Administrator" role; the local admin
# is outside roles), and Read-only cannot make the changes the later steps make.
ORCHESTRATOR_ROLE = "Read-write"


async def _certificate_identity_is_admin(ctx: StepContext) -> None:
    """The orchestrator's certificate identity is an LDAP user mapped to the Read-write role."""
    ldap = ctx.deployment.ldap
    groups = {g.lower() for g in await ctx.systems.directory.user_groups(ldap.verify_user)}
    admin_groups = {m.group_dn for m in ldap.role_mappings if ORCHESTRATOR_ROLE in m.roles}
    if not groups & {g.lower() for g in admin_groups}:
        raise Rejected(
            f"refusing to require client certificates: the identity {ldap.verify_user!r} is in none of the groups "
            f"mapped to {ORCHESTRATOR_ROLE} ({sorted(admin_groups)}); this would lock the orchestrator out. "
            f"Fix ldap.verify_user or ldap.role_mappings: the orchestrator's identity must map to {ORCHESTRATOR_ROLE}"
        )


class ClientCertificateAuth(Step):
    """Require a client certificate (identity in subject CN or UPN), proven to work first.
    The contingency profile requires none ("Not required"): nothing to do on a new Manager."""

    name = "client_certificate_auth"
    reversible = True

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        return await singleton(ctx.pexip, "authentication")

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        return field_changes("authentication", observed, {"client_certificate": final_authentication(ctx)[1]})

    async def apply(self, ctx: StepContext, observed: Any, changes: list[Change]) -> None:
        wanted = final_authentication(ctx)[1]
        if wanted == "NO":  # contingency: certificate-based authentication off, then a login without one
            await ctx.pexip.patch(AUTH, {"client_certificate": wanted})
            await ctx.pexip.verify_login(use_client_cert=False)
            return
        await _certificate_identity_is_admin(ctx)
        await ctx.pexip.patch(AUTH, {"client_certificate": wanted})
        # If the certificate login fails now, put the previous setting back rather than lock out.
        try:
            await ctx.pexip.verify_login(use_client_cert=True)
        except Exception:
            await ctx.pexip.patch(AUTH, {"client_certificate": observed.get("client_certificate", "NO")})
            raise


class DisableLocalAuth(Step):
    """Authentication source "LDAP database" only, after a certificate login has worked. The contingency
    profile keeps "LDAP database and local database" (the local admin, for when LDAP is down)."""

    name = "disable_local_auth"
    reversible = True

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        return await singleton(ctx.pexip, "authentication")

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        return field_changes("authentication", observed, {"source": final_authentication(ctx)[0]})

    async def apply(self, ctx: StepContext, observed: Any, changes: list[Change]) -> None:
        source, certificate = final_authentication(ctx)
        with_cert = certificate != "NO"
        if with_cert:  # the last way in with full access once local is gone: the directory must still back it
            await _certificate_identity_is_admin(ctx)
        await ctx.pexip.verify_login(use_client_cert=with_cert)
        await ctx.pexip.patch(AUTH, {"source": source})
        try:
            await ctx.pexip.verify_login(use_client_cert=with_cert)
        except Exception as exc:  # the login proved a moment ago fails: the local database back if still possible
            before = observed.get("source", ctx.policy.authentication.initial_source)
            try:
                await ctx.pexip.patch(AUTH, {"source": before})
            except Exception as restoring:
                raise Rejected(
                    f"{exc}; putting authentication.source back to {before} was refused too ({restoring}): no "
                    "identity of the orchestrator gets in; recover at the Manager's console or switch to the "
                    "fallback deployment"
                ) from exc
            raise
