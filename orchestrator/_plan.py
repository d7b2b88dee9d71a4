"""The dry-run plan: observe and diff every remaining step, read-only, and say what the run will do.

Per node and step a row says ``change`` (with the changes), ``ok`` (already right), ``unknown``
(it observes what an earlier step makes: never guessed; ``known_after`` names that step, or the
Management Node's milestone a Conferencing Node waits for, and ``will_set`` the values the step
sets, known from the configuration alone), ``error`` (a real problem: the run would fail there) or
``blocked`` (the run does not take the node there: the Management Node stops short of what it
waits for, or the node failed or is in maintenance).
The gates the run will stop at are listed with the command that opens each.

The plan also carries what it was made from (``bound``): hashes of the configuration and the
policy in their canonical form, of every observed value (and of the simulated world), and the
journal's head; a saved plan is applied only while all of them are unchanged (``_saved_plan``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePath
from typing import Any

from adapters.base import Systems
from config.errors import OrchestratorError, Unknowable
from config.model import Deployment
from config.secrets import REDACTOR, Secret
from journal import Journal
from machines.lifecycle import (
    FAILED,
    GATE_OF_STEP,
    GATES,
    LDAP_AUTHENTICATED,
    MILESTONES,
    management_lacks,
    milestone_index,
)
from machines.plan import remaining_steps
from orchestrator import _standby
from orchestrator import steps as step_impls
from orchestrator._gates import pending_gate, unreachable_gate
from orchestrator._refresh import refresh_node
from orchestrator.steps.base import StepContext

__all__ = [
    "STATUSES",
    "Plan",
    "steps_of",
    "plan_steps",
    "canonical",
    "sha256_of",
    "config_sha256",
    "policy_sha256",
    "journal_head",
]

# The row statuses this module writes; others (drift) may be added by other checks and are shown as they come.
STATUSES = ("change", "unknown", "ok", "error", "blocked")

# Not part of what the configuration declares: where it was read from and what was derived from it.
_NOT_DECLARED = ("source", "source_sha256", "policy", "policy_path", "policy_sha256", "policy_deviations")


def _plain(value: Any) -> Any:
    """A JSON-able form of configuration and observed values: secrets as their reference, never their value."""
    if isinstance(value, Secret):
        return value.ref
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, (PurePath, bytes)):
        return str(value) if isinstance(value, PurePath) else hashlib.sha256(value).hexdigest()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def canonical(value: Any) -> str:
    """One text per value: sorted keys, no spaces (what the hashes are taken of)."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_of(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def config_sha256(deployment: Deployment) -> str:
    """The deployment as loaded (canonical form): a comment or key order changed in the file changes nothing."""
    declared = {
        f.name: getattr(deployment, f.name) for f in dataclasses.fields(deployment) if f.name not in _NOT_DECLARED
    }
    return sha256_of(declared)


def policy_sha256(deployment: Deployment) -> str:
    return sha256_of(deployment.policy)


def journal_head(journal: Journal | None) -> dict[str, Any]:
    """The journal's chain head (seq 0: nothing recorded yet); a plan is bound to it."""
    head = journal.get_meta("head") if journal is not None else None
    return json.loads(head) if head else {"seq": 0, "hash": None}


def steps_of(nodes: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Per node, the steps of its rows that the run takes (not those already right, nor blocked ones)."""
    return {node: [r["step"] for r in rows if r["status"] not in ("ok", "blocked")] for node, rows in nodes.items()}


@dataclass
class Plan:
    """Per node and step: what would change, what is already right, what cannot be known yet; the gates.

    ``as_json()`` is the stable shape of ``run --dry-run --json`` and of a saved plan's ``plan``.
    """

    nodes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    gates: list[dict[str, str]] = field(default_factory=list)
    deployment: str = ""
    until: str = LDAP_AUTHENTICATED
    selected: list[str] | None = None  # the NODE arguments (None: every node)
    bound: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        rows = [r for rows in self.nodes.values() for r in rows]
        count = {s: sum(1 for r in rows if r["status"] == s) for s in STATUSES}
        other = len(rows) - sum(count.values())  # statuses added later (drift): counted apart, never dropped
        return {"nodes": len(self.nodes), **count, "other": other, "gates": len(self.gates)}

    def steps(self) -> dict[str, list[str]]:
        """The steps the run would take per node (what an applied plan must still be)."""
        return steps_of(self.nodes)

    def as_json(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "until": self.until,
            "selected": self.selected,
            "summary": self.summary(),
            "gates": self.gates,
            "nodes": self.nodes,
            "bound": self.bound,
        }


class _Observations:
    """Every observed value, by node and step, hashed once the plan is made (what the plan saw)."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, Any]] = {}

    def add(self, node: str, step: str, observed: Any) -> None:
        self.seen.setdefault(node, {})[step] = REDACTOR.scrub(_plain(observed))

    def sha256(self) -> str:
        return sha256_of(self.seen)


def _prerequisite_pending(
    deployment: Deployment,
    milestone: str,
    planned: dict[str, list[dict[str, Any]]],
    starts: dict[str, tuple[str, str | None]],
    mgr_until: str | None,
) -> tuple[str, str] | None:
    """Whether a Conferencing Node's ``milestone`` waits for the Management Node: ``("unknown", "pexip-mgr:
    hardened")`` when steps still to run take it there (this node then observes a world not made yet),
    ``("blocked", why)`` when this run does not take it there (``mgr_until``: where the run stops it; None: not
    driven)."""
    mgr = deployment.management.name
    needed = management_lacks(milestone, *starts.get(mgr, ("new", None)))
    if needed is None:
        return None
    if mgr_until is None or management_lacks(milestone, mgr_until, None) is not None:
        driven = f"--until {mgr_until} stops it before" if mgr_until else "it is not among the nodes of this run"
        return "blocked", f"waits for {mgr}: {needed}, and {driven}"
    rows = planned.get(mgr)
    if rows is not None and all(r["status"] == "ok" for r in _rows_up_to(rows, needed)):
        return None
    return "unknown", f"{mgr}: {needed}"


def _rows_up_to(rows: list[dict[str, Any]], needed: str) -> list[dict[str, Any]]:
    """The Manager's planned rows up to ``needed``: a milestone (its rows and those before), or a step (itself too)."""
    if needed in MILESTONES:
        return [r for r in rows if milestone_index(r["milestone"]) <= milestone_index(needed)]
    at = next((i for i, r in enumerate(rows) if r["step"] == needed), len(rows) - 1)
    return rows[: at + 1]


def _gate_of(
    deployment: Deployment, systems: Systems, journal: Journal | None, node: str, role: str, row: Any
) -> str | None:
    """The gate the run stops at before this row's step: not one opened already, nor one that opens by itself."""
    gate = GATE_OF_STEP.get(row["step"])
    if gate is None or row["status"] not in ("change", "unknown"):
        return None
    if row["status"] == "change":
        ctx = StepContext(deployment, deployment.node(node), systems, dry_run=True)
        changes = [step_impls.Change(c["field"], c["now"], c["wanted"]) for c in row["changes"]]
        gate = step_impls.STEPS[row["step"]].gate(ctx, changes)
        if gate is None:
            return None
    if unreachable_gate(role, GATES[gate]["transient"], None, gate, deployment) is not None:
        return None  # the policy or the configuration removes it (gates.security_wizard_approval off)
    if GATES[gate]["opens_by"] == "ca" and systems.ca.answers_by_itself:
        return None
    if journal is not None and pending_gate(journal, node, gate) is not None:
        return None  # approved in advance
    return gate


async def _plan_node(
    deployment: Deployment,
    systems: Systems,
    name: str,
    start: tuple[str, str | None],
    until: str,
    planned: dict[str, list[dict[str, Any]]],
    starts: dict[str, tuple[str, str | None]],
    seen: _Observations,
    mgr_until: str | None,
    held: str | None,
) -> list[dict[str, Any]]:
    spec = deployment.node(name)
    rows: list[dict[str, Any]] = []
    known_after: str | None = None
    blocked = held
    for milestone, step_name in remaining_steps(spec.role, *start, until):
        step = step_impls.STEPS[step_name]
        ctx = StepContext(deployment, spec, systems, dry_run=True)
        row: dict[str, Any] = {"milestone": milestone, "step": step_name}
        waits = None
        if spec.role == "conferencing" and not known_after and not blocked:
            waits = _prerequisite_pending(deployment, milestone, planned, starts, mgr_until)
        if waits and waits[0] == "blocked":
            blocked = waits[1]
        if blocked:  # this run never gets this node past here: neither this step nor any after it runs
            row.update(status="blocked", reason=blocked)
            rows.append(row)
            continue
        known_after = known_after or (waits[1] if waits else None)
        if known_after:
            row.update(status="unknown", known_after=known_after, will_set=REDACTOR.scrub(_plain(step.intent(ctx))))
            rows.append(row)
            continue
        try:
            observed = await step.observe(ctx)
            seen.add(name, step_name, observed)
            changes = step.diff(ctx, observed)
            row.update(status="change" if changes else "ok", changes=[_change(c) for c in changes])
            if ctx.scratch.get("not_settable"):  # this Manager's version cannot take them (pexip-api.md 7.9)
                row["not_settable"] = list(ctx.scratch["not_settable"])
            if changes:
                known_after = step_name  # later steps observe what this one would make: never guess them
        except Unknowable as exc:
            row.update(
                status="unknown", reason=str(exc), known_after=None, will_set=REDACTOR.scrub(_plain(step.intent(ctx)))
            )
            known_after = step_name
        except OrchestratorError as exc:
            row.update(status="error", reason=str(exc))
            known_after = step_name
        rows.append(row)
    return rows


def _change(change: step_impls.Change) -> dict[str, Any]:
    """A change with its kind: ``create`` (nothing there yet) or ``update`` (in place); values as JSON, scrubbed."""
    scrubbed = REDACTOR.scrub({change.field: _plain(change.now)}), REDACTOR.scrub({change.field: _plain(change.wanted)})
    return {
        "field": change.field,
        "now": scrubbed[0][change.field],
        "wanted": scrubbed[1][change.field],
        "action": "create" if change.now is None else "update",
    }


async def plan_steps(
    deployment: Deployment,
    journal: Journal | None,
    systems: Systems,
    *,
    nodes: Sequence[str] | None = None,
    until: str = LDAP_AUTHENTICATED,
    world: Any = None,
) -> Plan:
    """Observe and diff every remaining step of ``nodes`` (default: all), read-only, through ``systems``.

    The steps of the milestones a node completed are refreshed first: each that drifted is a row
    with ``status`` "drift" (or "unknown"/"error" when it cannot be observed), ``refresh`` true,
    and ``reversible`` (whether ``run`` re-applies it or fails the node with the repair command).
    """
    records = {r.name: r for r in journal.nodes()} if journal else {}
    starts: dict[str, tuple[str, str | None]] = {}
    held: dict[str, str] = {}  # nodes `run` leaves where they are: what their rows say instead of a plan
    for spec in deployment.nodes:
        r = records.get(spec.name)
        state, step = (r.state, r.step) if r else ("new", None)
        if state == FAILED and r is not None and r.failed_from:
            state = r.failed_from
            held[spec.name] = f"{spec.name} failed; `run` leaves it, `orchestrator resume {spec.name}` retries it"
        if r is not None and r.maintenance:
            held[spec.name] = f"{spec.name} is in maintenance; `orchestrator maintenance {spec.name} off` lets it go on"
        starts[spec.name] = (state, step)
    result = Plan(deployment=deployment.name, until=until, selected=sorted(nodes) if nodes else None)
    seen = _Observations()
    chosen = [s for s in deployment.nodes if not nodes or s.name in nodes]
    mgr_until = until if any(s.role == "management" and s.name not in held for s in chosen) else None
    # The Management Node first: whether a Conferencing Node can be observed depends on its plan.
    for spec in sorted(chosen, key=lambda s: s.role != "management"):
        rows = await _plan_node(
            deployment,
            systems,
            spec.name,
            starts[spec.name],
            until,
            result.nodes,
            starts,
            seen,
            mgr_until,
            held.get(spec.name),
        )
        r = records.get(spec.name)
        if r is not None and spec.name not in held:  # completed milestones refreshed: drift since done (#10)
            drifted = await refresh_node(deployment, spec, r.state, systems, failed_from=r.failed_from)
            rows = [{**d.as_dict(), "refresh": True} for d in drifted] + rows
        if deployment.profile == "contingency" and until == LDAP_AUTHENTICATED:  # once every node is built
            pending = next((row["step"] for row in rows if row["status"] != "ok"), None)
            rows.append(await _standby.plan_row(deployment, systems, spec, pending))
        result.nodes[spec.name] = rows
    result.nodes = {s.name: result.nodes[s.name] for s in chosen}
    for spec in chosen:
        for row in result.nodes[spec.name]:
            gate = _gate_of(deployment, systems, journal, spec.name, spec.role, row)
            if gate:
                row["gate"] = gate
                how = GATES[gate]["how"].format(node=spec.name)
                result.gates.append({"node": spec.name, "gate": gate, "step": row["step"], "how": how})
    result.bound = {
        "configuration_sha256": config_sha256(deployment),
        "policy_sha256": policy_sha256(deployment),
        "observed_sha256": seen.sha256(),
        "world_sha256": world.state_sha256() if world is not None else None,
        "journal_head": journal_head(journal),
    }
    return result
