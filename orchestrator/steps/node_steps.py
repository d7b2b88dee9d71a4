"""Steps on the node itself: the console wizards and the Conferencing Node's provisioning and registration.

Guide: "Pexip Infinity Management Node deployment and bootstrap configuration"
(steps 2-8) and "Pexip Infinity Conferencing Node deployment".
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from adapters.bootstrap_store import BootstrapStore
from config.errors import NotYet, Rejected, Unknowable
from config.secrets import REDACTOR
from orchestrator.steps._rest import find_one, singleton, worker_vm
from orchestrator.steps.base import Change, Step, StepContext

__all__ = [
    "InstallationWizard",
    "VerifyAdminLogin",
    "SecurityWizard",
    "DeploymentFile",
    "ProvisionNode",
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
        api = ctx.pexip
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
            raise Rejected(
                f"{ctx.node.name}: the console shows no installation yet; the security wizard needs it first"
            )
        # The record says the answers given, as the policy has them, never a fixed text (issue #7).
        return [Change("security_wizard", "not run", self.answers(ctx))] if observed != "secured" else []

    @staticmethod
    def answers(ctx: StepContext) -> dict[str, Any]:
        """The wizard's answers, prompt by prompt, from the policy (no secret among them)."""
        return dict(ctx.policy.security_wizard.settings())

    async def apply(self, ctx: StepContext, observed: Any, changes: list[Change]) -> None:
        await ctx.systems.console.security_wizard(ctx.node, _admin_password(ctx), self.answers(ctx))


# --- the Conferencing Node's bootstrap file (MANUAL-PROVISION-ONLY, pexip-api.md 7.2-7.4) ---------
# The worker_vm POST answer is the node's only bootstrap configuration: stored encrypted before
# the step commits (adapters.bootstrap_store), uploaded to the generic OVA's provisioning
# interface, and never journaled (the journal gets its SHA-256). A worker_vm whose file is lost
# before the node synced is deleted and created again: no endpoint returns the file twice.

_WORKER_PASSWORD_PREFIX = "pxw-"
_WORKER_PASSWORD_SHAPE = r"pxw-[A-Za-z0-9_-]{32}"  # the prefix, then token_urlsafe(24): 32 characters
_LOST = "exists, but its bootstrap file is not stored (lost: no endpoint returns it again)"
_RECREATE = "deleted and created again, its new bootstrap file stored encrypted"


def _store(ctx: StepContext) -> BootstrapStore:
    if ctx.systems.bootstrap is None:
        raise Rejected(f"{ctx.node.name}: no bootstrap store is wired: the worker_vm's bootstrap file would be lost")
    return ctx.systems.bootstrap


async def _sync_status(ctx: StepContext) -> str | None:
    for status in await ctx.pexip.status("worker_vm", name=ctx.node.name):
        if status.get("name") == ctx.node.name:
            return str(status.get("sync_status"))
    return None


async def _observe_worker(ctx: StepContext, *, keep_body: bool = False) -> dict[str, Any]:
    """The node's worker_vm, the SHA-256 of its stored file and its sync status. ``keep_body``: the file read is
    kept in the attempt's ``scratch`` (never journaled) for the upload, which would otherwise decrypt it again."""
    worker = await worker_vm(ctx.pexip, ctx.node.name)
    if worker is None:
        return {"worker": None, "stored": None, "sync": None}
    sync = await _sync_status(ctx)
    # A SYNCED node needs no file (neither step's diff asks for it then), so it is not read and decrypted for
    # nothing (issue #11: the verify of provision_node, and every observation of a resumed run's synced nodes).
    if sync == "SYNCED":
        return {"worker": worker, "stored": None, "sync": sync}
    # Only this worker_vm's answer counts: a file another worker_vm of the node left is lost to this one.
    body = _store(ctx).get(ctx.node.name, worker["resource_uri"])
    if keep_body and body is not None:
        ctx.scratch["bootstrap_body"] = (worker["resource_uri"], body)
    stored = hashlib.sha256(body).hexdigest() if body is not None else None
    return {"worker": worker, "stored": stored, "sync": sync}


async def _create_worker(ctx: StepContext, old: dict[str, Any] | None) -> str:
    """DELETE ``old`` (a worker_vm whose file is lost), POST the node's worker_vm, store its
    bootstrap file before anything else; return the file's SHA-256."""
    api, n = ctx.pexip, ctx.node
    location = await find_one(api, "system_location", name=n.location)
    if location is None:
        raise Rejected(f"system_location {n.location!r} does not exist yet on the Management Node")
    if old is not None:
        await api.delete(old["resource_uri"])
    # Terraform marks it required; never used, as SSH access is disabled (the guide). Never kept.
    # Masked by its shape, one pattern for every node's, not one registered value each (issue #11).
    REDACTOR.register_shape(_WORKER_PASSWORD_SHAPE)
    password = _WORKER_PASSWORD_PREFIX + secrets.token_urlsafe(24)
    created = await api.create(
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
            "password": password,
        },
    )
    if not created.body:
        raise Rejected(
            f"{n.name}: the Manager's worker_vm POST answered no bootstrap file; the node cannot be "
            "provisioned (delete the worker_vm and run again)"
        )
    ctx.scratch["worker_uri"] = created.uri  # the file is this worker_vm's (provision_node reads it back)
    return await _store(ctx).aput(n.name, created.body, created.uri)


def _with_digest(changes: list[Change], sha: str) -> None:
    """Name the stored file's SHA-256 in the change that made it: ``execute`` journals the list it
    handed to ``apply``, and the digest is known only once the POST answered."""
    for i, c in enumerate(changes):
        if c.field == "worker_vm":
            changes[i] = Change(c.field, c.now, f"{c.wanted} (bootstrap file sha256 {sha})")


class DeploymentFile(Step):
    """Conferencing Node: the Management Node generates its deployment file (worker_vm), kept encrypted."""

    name = "deployment_file"
    # Re-appliable: it differs only while the node is not provisioned (a SYNCED node needs no file),
    # and then re-creating the worker_vm and its stored file is the step's own recovery.
    reversible = True

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        return await _observe_worker(ctx)

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        n = ctx.node
        if observed["worker"] is None:
            return [Change("worker_vm", None, f"{n.name} ({n.fqdn}) in {n.location}, bootstrap file stored encrypted")]
        if observed["stored"] is None and observed["sync"] != "SYNCED":
            return [Change("worker_vm", _LOST, _RECREATE)]  # also a crash between the POST and the store
        return []

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        _with_digest(changes, await _create_worker(ctx, observed["worker"]))


class ProvisionNode(Step):
    """Upload the stored bootstrap file to the node's provisioning interface (HTTPS, tcp/8443).

    In ``installed`` before ``register_node``: the interface answers only once the VM boots,
    which ``lock_bios`` does, and the node gets its configuration only after its resources are
    reserved and its BIOS locked. A node already SYNCED needs nothing.
    """

    name = "provision_node"

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        return {**await _observe_worker(ctx, keep_body=True), "uploaded": ctx.scratch.get("bootstrap_uploaded")}

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        if observed["sync"] == "SYNCED":
            return []
        if observed["worker"] is None:
            return [Change("worker_vm", None, "created again, its bootstrap file stored encrypted, then uploaded")]
        if observed["stored"] is None:
            return [Change("worker_vm", _LOST, f"{_RECREATE}, then uploaded")]
        if observed["uploaded"] == observed["stored"]:
            return []  # uploaded in this run; register_node waits for the sync
        return [
            Change(
                "bootstrap_file",
                "not uploaded",
                f"uploaded to https://{ctx.node.address}:8443/ (sha256 {observed['stored']})",
            )
        ]

    async def apply(self, ctx: StepContext, observed: dict[str, Any], changes: list[Change]) -> None:
        worker = observed["worker"]["resource_uri"] if observed["worker"] is not None else None
        if any(c.field == "worker_vm" for c in changes):
            _with_digest(changes, await _create_worker(ctx, observed["worker"]))
            worker = ctx.scratch["worker_uri"]  # the worker_vm just posted, whose answer was stored
        provisioning = ctx.systems.provisioning
        if provisioning is None:
            raise Rejected(f"{ctx.node.name}: no provisioning adapter is wired: the bootstrap file cannot be uploaded")
        # The file as observed, unless the worker_vm was posted again since (its new file is read).
        kept = ctx.scratch.pop("bootstrap_body", None)
        body = kept[1] if kept is not None and kept[0] == worker else _store(ctx).get(ctx.node.name, worker)
        if body is None:
            raise Rejected(f"{ctx.node.name}: the bootstrap file vanished from {_store(ctx).directory} while uploading")
        await provisioning.upload_bootstrap(ctx.node, body)
        ctx.scratch["bootstrap_uploaded"] = hashlib.sha256(body).hexdigest()


class _WaitSync(Step):
    """Wait (by retrying with backoff) until the node reports in sync with the Management Node."""

    what = ""

    async def observe(self, ctx: StepContext) -> str | None:
        return await _sync_status(ctx)

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
    what = "the final administrator authentication (the profile's source and client certificates) reaching the node"
