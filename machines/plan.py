"""What should happen next to a node: a pure decision from its recorded place.

The engine asks ``next_action`` after every commit; ``orchestrator status``
asks it too, to say *why* a node stands where it stands. Same inputs, same
answer: no clock, no I/O (Temporal's rule for workflow code).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from machines.lifecycle import (
    FAILED,
    GATES,
    MILESTONES,
    NEW,
    STEPS,
    TARGET_OF,
    TRANSIENT_OF,
    WAITING,
    management_lacks,
    milestone_index,
)

__all__ = [
    "Action",
    "Done",
    "Held",
    "Stopped",
    "Blocked",
    "Start",
    "RunStep",
    "Wait",
    "next_action",
    "next_milestone",
    "remaining_steps",
]


@dataclass(frozen=True)
class Action:
    reason: str


@dataclass(frozen=True)
class Done(Action):
    """The node reached the target state."""


@dataclass(frozen=True)
class Held(Action):
    """Maintenance: automation stopped for this node by an operator."""


@dataclass(frozen=True)
class Stopped(Action):
    """Failed: waits for an operator's ``resume``."""


@dataclass(frozen=True)
class Blocked(Action):
    """Waits for another node (the cross-node guard)."""


@dataclass(frozen=True)
class Start(Action):
    milestone: str


@dataclass(frozen=True)
class RunStep(Action):
    step: str
    milestone: str
    last: bool  # the milestone's last step: its commit completes the milestone


@dataclass(frozen=True)
class Wait(Action):
    gate: str


def next_milestone(state: str) -> str | None:
    i = milestone_index(state)
    return MILESTONES[i] if 0 <= i < len(MILESTONES) else None


def next_action(
    *,
    role: str,
    state: str,
    step: str | None,
    management_state: str | None,
    management_step: str | None = None,
    maintenance: bool = False,
    until: str = MILESTONES[-1],
    last_error: str | None = None,
    gate: str | None = None,
    node: str = "NODE",
) -> Action:
    """Decide the next action for one node from its journaled record.

    Args:
        role: "management" or "conferencing".
        state: the node's lifecycle state.
        step: the step in progress (transient states), or None for the milestone's first.
        management_state: the Management Node's state (cross-node guard).
        management_step: its step in progress (the guard on one of its steps: ``MANAGEMENT_STEP_PREREQUISITE``).
        maintenance: the operator's maintenance flag.
        until: the milestone to stop at (``run --until``).
        node: the node's name, for the commands the reasons suggest.
    """
    if maintenance:
        return Held("in maintenance: automation stopped by an operator (maintenance off to continue)")
    if state == FAILED:
        return Stopped(f"failed: {last_error or 'unknown error'}; fix the cause, then `orchestrator resume {node}`")
    if state in WAITING:
        g = gate or next(name for name, spec in GATES.items() if spec["state"] == state)
        how = GATES.get(g, {}).get("how", "")
        return Wait(f"waiting on gate {g}" + (f"; {how.format(node=node)}" if how else ""), gate=g)
    if state == NEW or state in MILESTONES:
        if milestone_index(state) >= milestone_index(until):
            return _done(state, until)
        milestone = MILESTONES[milestone_index(state)]
        lacks = management_lacks(milestone, management_state, management_step) if role == "conferencing" else None
        if lacks in MILESTONES:
            return Blocked(f"waits for the Management Node to be {lacks} before {milestone} (now {management_state})")
        if lacks:
            return Blocked(
                f"waits for the Management Node's {lacks} before {milestone} (now {management_state}"
                + (f", at {management_step})" if management_step else ")")
            )
        return _start(milestone)
    if state in TARGET_OF:
        milestone = TARGET_OF[state]
        steps = STEPS[role][milestone]
        return _run_step(milestone, step if step in steps else steps[0], steps[-1])
    raise ValueError(f"unknown state {state!r} for node (role {role})")


# The actions below depend on the lifecycle's names alone: one frozen instance each, shared by
# every node (issue #11: a thousand nodes' report held a thousand equal ``Done`` and their texts).
@cache
def _done(state: str, until: str) -> Done:
    return Done(f"at {state}" + ("" if state == MILESTONES[-1] else f" (stopped at --until {until})"))


@cache
def _start(milestone: str) -> Start:
    return Start(f"start {milestone}", milestone=milestone)


@cache
def _run_step(milestone: str, step: str, last_step: str) -> RunStep:
    return RunStep(f"{milestone}: step {step}", step=step, milestone=milestone, last=step == last_step)


def remaining_steps(role: str, state: str, step: str | None, until: str = MILESTONES[-1]) -> list[tuple[str, str]]:
    """(milestone, step) pairs still to run from here, in order (for the dry-run plan)."""
    out: list[tuple[str, str]] = []
    start = milestone_index(state)
    if start < 0:
        return out
    for milestone in MILESTONES[start : milestone_index(until)]:
        steps = STEPS[role][milestone]
        if state == TRANSIENT_OF.get(milestone) and step in steps:
            steps = steps[steps.index(step) :]
        out.extend((milestone, s) for s in steps)
    return out
