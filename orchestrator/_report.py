"""What a run reports, and the fault-injection points the engine calls (kept apart from the run loop)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from machines.plan import Action, Blocked, Held, Stopped, Wait

__all__ = ["FaultHooks", "RunReport"]


class FaultHooks(Protocol):
    """Fault injection points of the simulated world (``--faults``)."""

    def before_step(self, node: str, step: str) -> None: ...

    def after_apply(self, node: str, step: str) -> None: ...


@dataclass
class RunReport:
    """Where each driven node ended this run, and why."""

    outcomes: dict[str, Action] = field(default_factory=dict)
    interrupted: bool = False
    recap: dict[str, Any] | None = None  # orchestrator._recap: set at the end of api.drive
    # With Blocked outcomes: the node they wait for (the Management Node) and where it stands now,
    # its outcome of this run, or its next action when this run did not drive it.
    blocked_by: tuple[str, Action] | None = None

    @property
    def exit_code(self) -> int:
        """1 failed or interrupted, 3 waiting on a gate (or maintenance), else 0; a blocked node counts as its blocker.

        A node blocked on a failed Management Node, or on one this run did not drive far enough, is
        not waiting on a gate: opening none would let it go on. That is 1, as a failed step: the
        summary says which node to resume or drive.
        """
        kinds = {type(a) for a in self.outcomes.values()}
        if Stopped in kinds or self.interrupted:
            return 1
        if kinds & {Wait, Held}:
            return 3
        if Blocked in kinds:
            return 3 if self.blocked_by is not None and isinstance(self.blocked_by[1], (Wait, Held)) else 1
        return 0

    @property
    def blocked(self) -> list[str]:
        """The nodes that ended this run blocked on another node."""
        return [name for name, action in self.outcomes.items() if isinstance(action, Blocked)]
