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

    @property
    def exit_code(self) -> int:
        kinds = {type(a) for a in self.outcomes.values()}
        if Stopped in kinds or self.interrupted:
            return 1
        if kinds & {Wait, Blocked, Held}:
            return 3
        return 0
