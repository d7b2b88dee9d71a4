"""The engine's own transition decision (``_fsm._fire_plain``) agrees with the ``transitions`` library's."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from config.errors import TransitionError
from machines.lifecycle import GATES, STATES, STEPS, TRANSITIONS
from machines.node import Fleet, NodeModel
from orchestrator._fsm import NodeMachine, _fire_library, build_machine, fire

TRIGGERS = sorted({t["trigger"] for t in TRANSITIONS})
KWARGS: list[dict[str, object]] = [
    {},
    {"reason": "boom"},
    *[dict[str, object](gate=g) for g in GATES],
    *[dict[str, object](finished=steps[-1], committed=list(steps)) for steps in STEPS["management"].values()],
    *[dict[str, object](step=steps[0]) for steps in STEPS["management"].values()],
]
Outcome = tuple[str, str | None, str | None, str]


def _model(machine: NodeMachine, state: str, failed_from: str | None) -> NodeModel:
    fleet = Fleet()
    model = NodeModel("mgr", "management", fleet, state=state)
    model.failed_from = failed_from
    fleet.management = model
    machine.add_model(model, initial=state)
    return model


async def _by_engine(machine: NodeMachine, model: NodeModel, trigger: str, kwargs: dict[str, object]) -> Outcome:
    try:
        await fire(machine, model, trigger, **kwargs)
        error = ""
    except TransitionError as exc:
        error = "illegal" if "not allowed" in str(exc) else "refused"
    return model.state, model.failed_from, model.reason, error


async def _by_library(machine: NodeMachine, model: NodeModel, trigger: str, kwargs: dict[str, object]) -> Outcome:
    before = model.state
    try:
        await _fire_library(machine, model, trigger, before, dict(kwargs))
        error = "" if model.state != before else "refused"
    except TransitionError:
        error = "illegal"
    return model.state, model.failed_from, model.reason, error


async def _compare(trigger: str) -> None:
    ours, theirs = build_machine(), build_machine()
    assert isinstance(ours, NodeMachine) and isinstance(theirs, NodeMachine)
    assert ours.plain_table() is not None  # the lifecycle is plain: the engine decides transitions itself
    for state, failed_from, kwargs in itertools.product(STATES, (None, "deploying"), KWARGS):
        engine = await _by_engine(ours, _model(ours, state, failed_from), trigger, kwargs)
        library = await _by_library(theirs, _model(theirs, state, failed_from), trigger, kwargs)
        assert engine == library, (trigger, state, failed_from, kwargs)


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_plain_decision_equals_the_library(trigger: str) -> None:
    asyncio.run(_compare(trigger))
