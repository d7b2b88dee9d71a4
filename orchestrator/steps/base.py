"""The step contract: observe -> diff -> apply -> verify, against the desired state.

A step is the guide's procedure for one part of a milestone. It never remembers:
everything it needs to know about what was done comes from observing the world,
which is what makes a replay after a crash safe (``DESIGN.md``, crash-safety
protocol, rule 2).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from adapters.base import Systems
from config.errors import AdapterError
from config.model import Deployment, NodeSpec, Policy
from orchestrator.steps._reads import AttemptReads

__all__ = ["Change", "StepContext", "Step", "Outcome", "execute", "plan_step", "URI"]

URI = "/api/admin/configuration/v1/"


@dataclass(frozen=True)
class Change:
    """One difference between the world and the desired state: ``field: now -> wanted``."""

    field: str
    now: Any
    wanted: Any

    def __str__(self) -> str:
        return f"{self.field}: {self.now!r} -> {self.wanted!r}"

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "now": self.now, "wanted": self.wanted}


@dataclass
class StepContext:
    deployment: Deployment
    node: NodeSpec
    systems: Systems
    gate_payload: dict[str, Any] | None = None  # what the opened gate carried (a certificate)
    dry_run: bool = False
    scratch: dict[str, Any] = field(default_factory=dict)  # per-execution memo, never persisted
    # `orchestrator cert renew`: create_csr makes a renewal CSR from the installed certificate (same key).
    renew: bool = False
    # The Manager's API for this attempt: a repeated read before any write is answered from memory
    # (:class:`orchestrator.steps._reads.AttemptReads`). Steps read and write the Manager through it.
    pexip: AttemptReads = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.pexip = AttemptReads(self.systems.pexip)

    def read_afresh(self) -> None:
        """Forget the attempt's reads of the Manager: the next ones ask it again."""
        self.pexip.forget()

    @property
    def policy(self) -> Policy:
        return self.deployment.policy

    @property
    def identity(self) -> str:
        """The deployment identity the node's VM carries: never adopt a VM without it."""
        return f"{self.deployment.name}/{self.node.name}"

    @property
    def is_management(self) -> bool:
        return self.node.role == "management"


@dataclass(frozen=True)
class Outcome:
    """What a step did: the changes it applied (empty: the world was already right)."""

    step: str
    changes: tuple[Change, ...]
    # Settings this Manager's version cannot take (absent or read-only in its /schema/): reported, never "done".
    not_settable: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"changed": [c.as_dict() for c in self.changes]}
        if self.not_settable:
            payload["not_settable"] = list(self.not_settable)
        return payload


class Step:
    """Base of every step. Subclasses set ``name`` and implement the three methods."""

    name: ClassVar[str] = ""
    # Side effects on the node's ESXi host: limited by the host's max_concurrent.
    per_host: ClassVar[bool] = False
    # Drift found by a refresh (``orchestrator._refresh``) is re-applied by ``run`` only when the step's
    # apply is idempotent and may run again on a finished node (a setting, a reservation); otherwise the
    # node fails with the command that repairs it (a VM gone, a wizard answered otherwise). Decided per step.
    reversible: ClassVar[bool] = False

    def gate(self, ctx: StepContext, changes: list[Change]) -> str | None:
        """The gate that must be open before ``apply`` runs these changes, if any."""
        return None

    async def try_open_gate(self, ctx: StepContext, gate: str) -> dict[str, Any] | None:
        """Open the gate from the outside world if it can (the CA returned a certificate)."""
        return None

    def intent(self, ctx: StepContext) -> dict[str, Any]:
        """What the step sets, known from the configuration alone: the plan shows it for a step not observable yet."""
        return {}

    async def observe(self, ctx: StepContext) -> Any:
        raise NotImplementedError

    def diff(self, ctx: StepContext, observed: Any) -> list[Change]:
        raise NotImplementedError

    async def apply(self, ctx: StepContext, observed: Any, changes: list[Change]) -> None:
        raise NotImplementedError


async def plan_step(step: Step, ctx: StepContext) -> list[Change]:
    """Observe and diff only: the dry-run plan of one step (read-only)."""
    ctx.read_afresh()  # a caller may plan again with the same context (a retry): it reads the world again
    observed = await step.observe(ctx)
    return step.diff(ctx, observed)


async def execute(
    step: Step,
    ctx: StepContext,
    *,
    before_apply: Callable[[list[Change]], Awaitable[bool]] | None = None,
    after_apply: Callable[[], None] | None = None,
) -> Outcome | None:
    """Observe, diff, apply what differs, then observe again and require no difference.

    Args:
        before_apply: asked with the changes before any side effect; False holds the step
            (a gate is not open) and ``execute`` returns None.
        after_apply: called once the side effects are done, before verifying (fault injection).
    """
    ctx.read_afresh()
    observed = await step.observe(ctx)
    changes = step.diff(ctx, observed)
    if not changes:
        return Outcome(step.name, (), _not_settable(ctx))
    if before_apply is not None:
        if not await before_apply(changes):
            return None
        # A gate that opened just now may name what is applied (the signed certificate): diff again.
        changes = step.diff(ctx, observed) if ctx.gate_payload is not None else changes
    await step.apply(ctx, observed, changes)
    if after_apply is not None:
        after_apply()
    ctx.read_afresh()  # verify reads the world after apply: the check that the change took
    remaining = step.diff(ctx, await step.observe(ctx))
    if remaining:
        raise AdapterError(
            f"{step.name} on {ctx.node.name}: applied, but the world still differs: "
            + "; ".join(str(c) for c in remaining),
            retryable=True,
        )
    return Outcome(step.name, tuple(changes), _not_settable(ctx))


def _not_settable(ctx: StepContext) -> tuple[str, ...]:
    return tuple(ctx.scratch.get("not_settable", ()))
