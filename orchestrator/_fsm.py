"""Builds the one ``AsyncMachine`` that holds every node model.

The lifecycle is data in ``machines/``; this is where it meets the ``transitions``
library (which imports asyncio, so it stays out of the pure layer).
"""

from __future__ import annotations

import logging

from transitions.extensions.asyncio import AsyncMachine

from config.errors import TransitionError
from machines.lifecycle import NEW, STATES, TRANSITIONS
from machines.node import NodeModel

__all__ = ["build_machine", "fire"]

# model_override=True makes transitions skip binding convenience methods to models that
# do not declare them, and log each skip at WARNING: that is by design here, not news.
logging.getLogger("transitions").setLevel(logging.ERROR)


def build_machine() -> AsyncMachine:
    return AsyncMachine(
        model=None,
        states=list(STATES),
        transitions=TRANSITIONS,
        initial=NEW,
        auto_transitions=False,
        model_override=True,
        queued="model",
        send_event=True,
        ignore_invalid_triggers=False,
    )


async def fire(machine: AsyncMachine, model: NodeModel, trigger: str, **kwargs: object) -> None:
    """Fire ``trigger`` on ``model``; raise ``TransitionError`` when it is illegal or a guard says no."""
    before = model.state
    try:
        # With queued="model" the trigger's return value only says "processed", so a
        # refused guard is seen by the state not changing (every transition moves).
        await machine.events[trigger].trigger(model, **kwargs)
    except Exception as exc:  # transitions raises MachineError for an illegal source state
        if exc.__class__.__name__ == "MachineError":
            raise TransitionError(f"node {model.name}: event {trigger!r} is not allowed from state {before!r}") from exc
        raise
    if model.state == before:
        raise TransitionError(
            f"node {model.name}: event {trigger!r} refused from state {before!r} by its guard ({kwargs or 'no arguments'})"
        )
