"""Steps on the node itself: the console wizards and the Conferencing Node's registration.

Guide: "Pexip Infinity Management Node deployment and bootstrap configuration"
(steps 2-8) and "Pexip Infinity Conferencing Node deployment".
"""

from __future__ import annotations

from typing import Any

from config.errors import NotYet, Rejected, Unknowable
from orchestrator.steps._rest import find_one, singleton, worker_vm
from orchestrator.steps.base import Change, Step, StepContext

__all__ = [
    "InstallationWizard",
    "VerifyAdminLogin",
    "SecurityWizard",
    "DeploymentFile",
    "RegisterNode",
    "ConfigSync",
    "AuthenticationSync",
]


def _admin_password(ctx: StepContext) -> str:
    secret = ctx.deployment.pexip_api.admin_password
    if secret is None:
        raise Rejected("pexip_api.admin_password is not set; set it to env:NAME or file:PATH")
    return secret.reveal()


class InstallationWizard(Step):
    """Run the installation wizard: incident reporting no, usage statistics no."""

    name = "installation_wizard"

    async def observe(self, ctx: StepContext) -> str:
        return await ctx.systems.console.wizard_state(ctx.node)

    def diff(self, ctx: StepContext, observed: str) -> list[Change]:
        return [Change("installation_wizard", "not run", self.answers(ctx))] if observed == "unconfigured" else []

    @staticmethod
    def answers(ctx: StepContext) -> dict[str, Any]:
        """The wizard's answers as given (the admin password goes apart: never in the record)."""
        n, net = ctx.node, ctx.deployment.network
        return {
            **ctx.policy.installation_wizard.settings(),
            "hostname": n.hostname,
            "domain": n.domain,
            "address": n.address,
            "netmask": n.netmask,
            "gateway": n.gateway,
            "dns_servers": list(net.dns_servers),
            "ntp_servers": [s.address for s in net.ntp_servers],
            "admin_user": ctx.deployment.pexip_api.admin_user,
        }

    async def apply(self, ctx: StepContext, observed: Any, changes: list[Change]) -> None:
        await ctx.systems.console.installation_wizard(ctx.node, _admin_password(ctx), self.answers(ctx))


class VerifyAdminLogin(Step):
    """Guide step 5: prove the Administrator interface accepts a login.

    Right after installation that is the wizard's admin credentials; once client
    certificates are required (ldap_authenticated), the local login is gone by design
    and the proof is the orchestrator's certificate login instead.
    """

    name = "verify_admin_login"

    async def observe(self, ctx: StepContext) -> str:
        api = ctx.systems.pexip
        try:
            auth = await singleton(api, "authentication")
        except Rejected:
            auth = {}
        return await api.verify_login(use_client_cert=auth.get("client_certificate", "NO") not in ("NO", None))

    def diff(self, ctx: StepContext, observed: str) -> list[Change]:
        return []  # a login that fails raises in observe: there is nothing to change, only to prove


class SecurityWizard(Step):
    """Run the security wizard with the guide's answers. Irreversible: an operator approves it."""

    name = "security_wizard"

    def gate(self, ctx: StepContext, changes: list[Change]) -> str | None:
        return "security_wizard" if ctx.policy.gates.security_wizard_approval else None

    async def observe(self, ctx: StepContext) -> str:
        return await ctx.systems.console.wizard_state(ctx.node)

    def diff(self, ctx: StepContext, observed: str) -> list[Change]:
        if observed == "unconfigured":
            if ctx.dry_run:
                raise Unknowable("the installation wizard has not run yet")
            raise Rejected(f"{ctx.node.name}: the console shows no installation yet; the security wizard needs it first")
        # The record says the answers given, as the policy has them, never a fixed text (issue #7).
        return [Change("security_wizard", "not run", self.answers(ctx))] if observed != "secured" else []

    @staticmethod
    def answers(ctx: StepContext) -> dict[str, Any]:
        """The wizard's answers, prompt by prompt, from the policy (no secret among them)."""
        return dict(ctx.policy.security_wizard.settings())

    async def apply(self, ctx: StepContext, observed: Any, changes: list[Change]) -> None:
        await ctx.systems.console.security_wizard(ctx.node, _admin_password(ctx), self.answers(ctx))


class DeploymentFile(Step):
    """Conferencing Node: the Management Node generates its deployment file (worker_vm)."""

    name = "deployment_file"

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        api = ctx.systems.pexip
        location = await find_one(api, "system_location", name=ctx.node.location)
        return {"worker": await worker_vm(api, ctx.node.name), "location": location}

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        if observed["worker"] is None:
            return [Change("worker_vm", None, f"{ctx.node.name} ({ctx.node.fqdn}) in {ctx.node.location}")]
        return []

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        n = ctx.node
        location = observed["location"]
        if location is None:
            raise Rejected(f"system_location {n.location!r} does not exist yet on the Management Node")
        await ctx.systems.pexip.create(
            "worker_vm",
            {
                "name": n.name,
                "hostname": n.hostname,
                "domain": n.domain,
                "address": n.address,
                "netmask": n.netmask,
                "gateway": n.gateway,
                "system_location": location["resource_uri"],
                "node_type": "CONFERENCING",
                "deployment_type": "MANUAL-PROVISION-ONLY",
                "vm_cpu_count": n.cpus,
                "vm_system_memory": n.memory_mb,
            },
        )


class _WaitSync(Step):
    """Wait (by retrying with backoff) until the node reports in sync with the Management Node."""

    what = ""

    async def observe(self, ctx: StepContext) -> str | None:
        for status in await ctx.systems.pexip.status("worker_vm", name=ctx.node.name):
            if status.get("name") == ctx.node.name:
                return str(status.get("sync_status"))
        return None

    def diff(self, ctx: StepContext, observed: str | None) -> list[Change]:
        if observed != "SYNCED":
            if ctx.dry_run:
                raise Unknowable(f"{self.what}: the node reports {observed or 'nothing yet'}")
            # Not a change we can make: the node syncs by itself. Wait, with backoff.
            raise NotYet(f"{ctx.node.name}: {self.what}: not in sync yet (status {observed or 'not registered'})")
        return []


class RegisterNode(_WaitSync):
    name = "register_node"
    what = "registration with the Management Node"


class ConfigSync(_WaitSync):
    name = "config_sync"
    what = "hardened configuration (SNMPv3, location DSCP/MTU) reaching the node"


class AuthenticationSync(_WaitSync):
    name = "authentication_sync"
    what = "LDAP-only, client-certificate administrator authentication reaching the node"
