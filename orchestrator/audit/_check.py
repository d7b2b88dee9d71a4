"""Every control for every node, read live through the steps' own observe -> diff; nothing written.

Each step a node's controls need is observed once (``Step.observe`` with ``dry_run``: read-only)
and diffed against the desired state (``Step.diff``), exactly as ``run --dry-run`` does; a
control takes the changes and the evidence its field patterns match. A change that no control
of its step claims goes to the step's first control, so no difference is ever left out.

Statuses: ``pass`` (no difference), ``fail`` (a difference, or the diff refused what it saw),
``error`` (the system could not be observed), ``not_settable`` (every difference is a field the
version's API does not have: pexip-api.md "not settable on this version", never "done"),
``not_applicable`` (the node's role, or the deployment, makes the control moot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.base import Systems
from config.controls import Control, Controls, load_controls
from config.errors import OrchestratorError
from config.model import Deployment, NodeSpec
from config.secrets import REDACTOR
from machines.lifecycle import STEPS as LIFECYCLE
from orchestrator import steps as step_impls
from orchestrator.audit._evidence import flatten
from orchestrator.steps.base import Change, StepContext

__all__ = ["STATUSES", "FAILING", "ControlResult", "AuditReport", "check"]

STATUSES = ("pass", "fail", "error", "not_settable", "not_applicable")
FAILING = frozenset({"fail", "error"})  # what makes `orchestrator audit` exit 1


@dataclass(frozen=True)
class ControlResult:
    """One control on one node: what the guide wants, what the system shows, and the verdict."""

    control: Control
    node: str
    role: str
    status: str
    expected: dict[str, Any]
    observed: dict[str, Any]
    evidence: dict[str, Any]
    policy: dict[str, Any]
    reason: str
    at: str  # when the system was observed (UTC, ISO 8601)

    def as_json(self) -> dict[str, Any]:
        c = self.control
        return {
            "control": c.id,
            "group": c.group,
            "title": c.title,
            "section": c.section,
            "guide": c.guide,
            "steps": list(c.steps),
            "node": self.node,
            "role": self.role,
            "status": self.status,
            "expected": self.expected,
            "observed": self.observed,
            "evidence": self.evidence,
            "policy": self.policy,
            "reason": self.reason,
            "at": self.at,
        }


@dataclass
class AuditReport:
    """Every result of one audit, in control order per node."""

    deployment: str
    generated_at: str
    nodes: list[str]
    results: list[ControlResult] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        return {s: sum(1 for r in self.results if r.status == s) for s in STATUSES}

    @property
    def passed(self) -> bool:
        return not any(r.status in FAILING for r in self.results)

    def as_json(self) -> dict[str, Any]:
        """The report's stable JSON shape; secrets scrubbed (the redactor knows every configured one)."""
        body = {
            "report": "secure-mode compliance audit",
            "deployment": self.deployment,
            "generated_at": self.generated_at,
            "nodes": self.nodes,
            "passed": self.passed,
            "summary": self.summary,
            "results": [r.as_json() for r in self.results],
        }
        scrubbed: dict[str, Any] = REDACTOR.scrub(body)
        return scrubbed


@dataclass(frozen=True)
class _Observation:
    evidence: dict[str, Any]
    changes: tuple[Change, ...]
    error: str | None  # the system could not be observed
    refused: str | None  # the diff refused what it saw (a wrong wizard state, a node not in sync)
    at: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def _observe(deployment: Deployment, node: NodeSpec, systems: Systems, step: str) -> _Observation:
    impl = step_impls.STEPS[step]
    ctx = StepContext(deployment, node, systems, dry_run=True)
    at = _now()
    try:
        observed = await impl.observe(ctx)
    except OrchestratorError as exc:
        return _Observation({}, (), str(exc), None, at)
    evidence = flatten(step, observed)
    try:
        return _Observation(evidence, tuple(impl.diff(ctx, observed)), None, None, at)
    except OrchestratorError as exc:
        return _Observation(evidence, (), None, str(exc), at)


def _policy_values(deployment: Deployment, control: Control) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in control.policy:
        value: Any = deployment.policy
        for part in key.split("."):
            value = getattr(value, part)
        out[key] = list(value) if isinstance(value, (tuple, frozenset)) else value
    return out


def _moot(deployment: Deployment, node: NodeSpec, control: Control, steps: list[str]) -> str | None:
    if node.role not in control.roles or not steps:
        return f"applies to {' and '.join(control.roles)} nodes; {node.name} is a {node.role} node"
    if control.not_applicable_if:
        path, wanted = control.not_applicable_if.split("=", 1)
        value: Any = deployment
        for part in path.split("."):
            value = getattr(value, part)
        if str(value) == wanted:
            return f"{path} is {wanted}"
    return None


def _absent(change: Change, evidence: dict[str, Any]) -> bool:
    """A field of an object that exists but does not have it: this version's API lacks the setting."""
    if change.field in evidence or "." not in change.field:
        return False
    parent = change.field.rsplit(".", 1)[0]
    return any(k.startswith(parent + ".") for k in evidence)


def _claimed(control: Control, step: str, change: Change, controls: list[Control]) -> bool:
    if control.matches(change.field):
        return True
    of_step = [c for c in controls if step in c.steps]
    return not any(c.matches(change.field) for c in of_step) and bool(of_step) and of_step[0] is control


def _result(
    deployment: Deployment, node: NodeSpec, control: Control, seen: dict[str, _Observation], applicable: list[Control]
) -> ControlResult:
    runs = {s for steps in LIFECYCLE[node.role].values() for s in steps}
    steps = [s for s in control.steps if s in runs]
    policy = _policy_values(deployment, control)
    moot = _moot(deployment, node, control, steps)

    def made(
        status: str, reason: str = "", expected: Any = None, observed: Any = None, ev: Any = None
    ) -> ControlResult:
        at = max((seen[s].at for s in steps if s in seen), default=_now())
        return ControlResult(
            control, node.name, node.role, status, expected or {}, observed or {}, ev or {}, policy, reason, at
        )

    if moot:
        return made("not_applicable", moot)
    obs = [seen[s] for s in steps]
    evidence = {k: v for o in obs for k, v in o.evidence.items() if control.matches(k)}
    errors = [o.error for o in obs if o.error]
    if errors:
        return made("error", "; ".join(errors), ev=evidence)
    refused = [o.refused for o in obs if o.refused]
    changes = [ch for s, o in zip(steps, obs, strict=True) for ch in o.changes if _claimed(control, s, ch, applicable)]
    if not changes and not refused:
        return made("pass", expected=evidence, observed=evidence, ev=evidence)
    expected = {**evidence, **{c.field: c.wanted for c in changes}}
    observed = {**evidence, **{c.field: c.now for c in changes}}
    all_evidence = {k: v for o in obs for k, v in o.evidence.items()}
    if changes and not refused and all(_absent(c, all_evidence) for c in changes):
        fields = ", ".join(c.field for c in changes)
        return made(
            "not_settable", f"not settable on this version: the API has no {fields}", expected, observed, evidence
        )
    reason = "; ".join([*refused, *(str(c) for c in changes)])
    return made("fail", reason, expected, observed, evidence)


async def check(
    deployment: Deployment, systems: Systems, nodes: list[str] | None = None, controls: Controls | None = None
) -> AuditReport:
    """Audit ``nodes`` (default: every node of the deployment) against every control, read-only.

    Raises:
        ConfigError: a NODE that is not in the deployment.
    """
    from config.errors import ConfigError

    known = [n.name for n in deployment.nodes]
    unknown = [n for n in nodes or [] if n not in known]
    if unknown:
        raise ConfigError([("NODE", f"{unknown} not in deployment {deployment.name}; nodes: {known}")])
    controls = controls or load_controls()
    report = AuditReport(deployment.name, _now(), [n for n in known if not nodes or n in nodes])
    for node in deployment.nodes:
        if node.name not in report.nodes:
            continue
        runs = {s for steps in LIFECYCLE[node.role].values() for s in steps}
        applicable = [c for c in controls.controls if node.role in c.roles]
        wanted = [s for s in dict.fromkeys(s for c in applicable for s in c.steps) if s in runs]
        seen = {s: await _observe(deployment, node, systems, s) for s in wanted}
        report.results += [_result(deployment, node, c, seen, applicable) for c in controls.controls]
    return report
