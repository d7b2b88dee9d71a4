"""The contingency deployment's standby: every VM powered off once the whole deployment is built.

The guide's fallback system is kept ready for the day the primary one fails or is compromised
(``[deployment] profile = "contingency"``, the policy's ``[contingency] power_off``). This is a
deployment milestone action, not a node step: the Management Node must keep running until every
Conferencing Node has reached ``ldap_authenticated`` (their ``authentication_sync`` asks it), and
a Conferencing Node cannot start that milestone before the Management Node has finished it. So
once a run has brought every node of the deployment to ``ldap_authenticated``, the nodes it drove
are powered off, the Conferencing Nodes first and the Management Node last.

Each power-off is journaled (``standby_power_off``) before the call (``phase: started``) and once
vCenter shows the VM off (``phase: done``). It observes first: a VM already off changes nothing,
so a run killed in between powers off what is left on the next run, and a second run does nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from adapters.base import Systems
from config.errors import OrchestratorError, Rejected
from config.model import Deployment, NodeSpec
from journal import Journal, Transition, kinds
from machines.lifecycle import LDAP_AUTHENTICATED

__all__ = ["power_off_standby", "plan_row", "standby_ready"]


def standby_ready(deployment: Deployment, journal: Journal) -> bool:
    """Whether a contingency deployment's power-off is due: every node at ``ldap_authenticated`` in the journal.

    The journal's rows, not the engine's models: a node's model takes its new state when the transition
    is fired, before the commit that journals it lands (``orchestrator._journaled``), so the models can
    say "every node built" while the last node's ``ldap_authenticated`` is still on its way to disk.
    """
    if deployment.profile != "contingency" or not deployment.policy.contingency.power_off:
        return False
    states = {r.name: r.state for r in journal.nodes()}
    return all(states.get(n.name) == LDAP_AUTHENTICATED for n in deployment.nodes)


async def power_off_standby(
    deployment: Deployment,
    journal: Journal,
    systems: Systems,
    commit: Callable[[Transition], Awaitable[None]],
    nodes: Sequence[str],
    *,
    actor: str,
) -> dict[str, str]:
    """Power off the VMs of ``nodes`` once every node of a contingency deployment is at ``ldap_authenticated``.

    Returns:
        ``{node: why}`` for each VM that could not be powered off (empty: all off, or nothing to do:
        the primary profile, ``power_off = false``, or a node not built yet).
    """
    if not standby_ready(deployment, journal):
        return {}
    failed: dict[str, str] = {}

    async def off(node: NodeSpec) -> None:
        try:
            await _power_off(deployment, systems, commit, node, actor)
        except OrchestratorError as exc:
            failed[node.name] = f"{node.name}: the standby power-off failed: {exc}"

    driven = set(nodes)
    await asyncio.gather(*(off(n) for n in deployment.conferencing if n.name in driven))
    if deployment.management.name in driven:
        await off(deployment.management)  # last: the Conferencing Nodes' Manager
    return failed


async def _power_off(
    deployment: Deployment,
    systems: Systems,
    commit: Callable[[Transition], Awaitable[None]],
    node: NodeSpec,
    actor: str,
) -> None:
    identity = f"{deployment.name}/{node.name}"
    vm = await systems.vsphere.find_vm(node, identity)
    if vm is None:
        raise Rejected(f"the VM of {node.name} ({identity}) is not in vCenter", system="vsphere")
    if vm.power_state == "poweredOff":
        return
    event = {"vm": vm.name, "moref": vm.moref}
    await commit(
        Transition(
            node=node.name,
            kind=kinds.STANDBY_POWER_OFF,
            actor=actor,
            payload={**event, "phase": "started", "was": vm.power_state},
        )
    )
    after = await systems.vsphere.power_off(vm)
    await commit(
        Transition(
            node=node.name,
            kind=kinds.STANDBY_POWER_OFF,
            actor=actor,
            payload={**event, "phase": "done", "power_state": after.power_state},
        )
    )


async def plan_row(
    deployment: Deployment, systems: Systems, node: NodeSpec, unknown_from: str | None
) -> dict[str, Any]:
    """``run --dry-run``: the standby power-off of a contingency deployment's node, as a plan row (read-only)."""
    row: dict[str, Any] = {"milestone": LDAP_AUTHENTICATED, "step": "standby_power_off"}
    if unknown_from:
        return {**row, "status": "unknown", "reason": f"depends on {unknown_from}"}
    try:
        vm = await systems.vsphere.find_vm(node, f"{deployment.name}/{node.name}")
    except OrchestratorError as exc:
        return {**row, "status": "error", "reason": str(exc)}
    if vm is None:
        return {**row, "status": "unknown", "reason": f"the VM of {node.name} is not deployed yet"}
    if vm.power_state == "poweredOff":
        return {**row, "status": "ok", "changes": []}
    change = {"field": "vm.power_state", "now": vm.power_state, "wanted": "poweredOff"}
    return {**row, "status": "change", "changes": [change]}
