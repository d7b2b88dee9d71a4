"""The node model that the lifecycle machine drives, and its guards.

One ``NodeModel`` per node, all held by one machine (``transitions`` with
``model_override=True``: the machine binds nothing to the model but ``state``,
which keeps a model near 1 KB instead of carrying a bound method per trigger).
Guards are pure: they read the model and the fleet, never the world.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from machines.lifecycle import (
    GATES,
    NEW,
    STEPS,
    TARGET_OF,
    TRANSIENT_OF,
    management_lacks,
    milestone_index,
)

__all__ = ["NodeModel", "Fleet", "RECORDED_FIELDS"]

# The node's journaled fields (the journal's node row, ``Transition.update``) and the
# model's attributes that hold them. ``state`` is not here: the machine alone sets it.
RECORDED_FIELDS: dict[str, str] = {
    "step": "step",
    "attempt": "attempt",
    "gate": "gate",
    "last_error": "reason",
    "failed_from": "failed_from",
    "maintenance": "maintenance",
}


class Fleet:
    """What one node may know of the others: the Management Node's progress."""

    __slots__ = ("management",)

    def __init__(self) -> None:
        self.management: NodeModel | None = None

    def management_ready(self, milestone: str) -> bool:
        """Whether the Management Node is far enough for a Conferencing Node to start ``milestone``
        (a failed one counts where it failed)."""
        m = self.management
        if m is None:
            return management_lacks(milestone, None, None) is None
        state = m.failed_from if m.state == "failed" and m.failed_from else m.state
        return management_lacks(milestone, state, m.step) is None


class NodeModel:
    """A node's place in the lifecycle. ``state`` is set by the machine only."""

    __slots__ = ("name", "role", "state", "step", "attempt", "failed_from", "reason", "gate", "maintenance", "fleet")

    def __init__(self, name: str, role: str, fleet: Fleet, state: str = NEW) -> None:
        self.name = name
        self.role = role
        self.state = state
        self.step: str | None = None
        self.attempt = 0
        self.failed_from: str | None = None
        self.reason: str | None = None
        self.gate: str | None = None
        self.maintenance = False
        self.fleet = fleet

    def __repr__(self) -> str:
        return f"<NodeModel {self.name} {self.role} {self.state} step={self.step}>"

    def record(self, fields: Mapping[str, Any]) -> None:
        """Take the journaled ``fields`` (a node row, or the update just committed): one source, no drift."""
        for column, value in fields.items():
            if column in RECORDED_FIELDS:
                setattr(self, RECORDED_FIELDS[column], value)

    def reached(self, milestone: str) -> bool:
        """Whether the node has passed ``milestone`` (a failed node counts where it failed)."""
        state = self.failed_from if self.state == "failed" and self.failed_from else self.state
        return milestone_index(state) >= milestone_index(milestone)

    # --- guards (the machine passes EventData: send_event=True) ---

    def prerequisites_met(self, event: Any) -> bool:
        """Not in maintenance, and the Management Node is far enough for this milestone."""
        if self.maintenance:
            return False
        milestone = TARGET_OF[event.transition.dest]
        if self.role == "conferencing":
            return self.fleet.management_ready(milestone)
        return True

    def steps_done(self, event: Any) -> bool:
        """The step just committed is the milestone's last, and each of its steps committed (``committed``)."""
        milestone = TARGET_OF[event.transition.source]
        steps = STEPS[self.role][milestone]
        committed = event.kwargs.get("committed")
        # The engine always passes ``committed``: a journaled place alone never completes a milestone.
        return bool(event.kwargs.get("finished") == steps[-1] and (committed is None or set(steps) <= set(committed)))

    def gate_matches(self, event: Any) -> bool:
        gate = event.kwargs.get("gate")
        return gate in GATES and GATES[gate]["state"] == event.transition.dest

    def returns_to_failed_from(self, event: Any) -> bool:
        return bool(event.transition.dest == self.failed_from)

    def rewind_allowed(self, event: Any) -> bool:
        """Back to the milestone of ``step`` (kwarg), never past where the node is."""
        step = event.kwargs.get("step")
        here = self.failed_from if self.state == "failed" and self.failed_from else self.state
        for milestone, steps in STEPS[self.role].items():
            if step in steps:
                return TRANSIENT_OF[milestone] == event.transition.dest and milestone_index(
                    TRANSIENT_OF[milestone]
                ) <= milestone_index(here)
        return False

    # --- callbacks ---

    def remember_failure(self, event: Any) -> None:
        self.failed_from = self.state
        self.reason = event.kwargs.get("reason")
