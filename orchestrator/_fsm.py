"""Builds the one ``AsyncMachine`` that holds every node model.

The lifecycle is data in ``machines/``; this is where it meets the ``transitions``
library (which imports asyncio, so it stays out of the pure layer).
"""

from __future__ import annotations

import logging
from collections import deque
from enum import Enum
from typing import Any, cast

from transitions.core import State
from transitions.extensions.asyncio import AsyncMachine

from config.errors import TransitionError
from machines.lifecycle import NEW, STATES, TRANSITIONS
from machines.node import NodeModel

__all__ = ["build_machine", "fire", "NodeMachine"]

# model_override=True makes transitions skip binding convenience methods to models that
# do not declare them, and log each skip at WARNING: that is by design here, not news.
logging.getLogger("transitions").setLevel(logging.ERROR)


class NodeMachine(AsyncMachine):
    """One machine, many node models, added in O(1) each.

    ``transitions`` binds convenience methods (``is_<state>``, ``may_<trigger>``...) to each
    model as it is added, and checks membership in a list: about 200 us per model and
    quadratic, 2 s for 10,000 nodes. With ``model_override=True`` and models that declare
    none of those names nothing would be bound anyway, so ``add_model`` only sets the
    initial state (and gives the model an event queue if the machine is queued per model).
    """

    def add_model(self, model: Any, initial: str | Enum | State | None = None) -> None:
        for mod in model if isinstance(model, list) else [model]:
            if id(mod) in self._model_ids:
                continue
            self._model_ids.add(id(mod))
            self.set_state(initial or cast(str, self.initial), model=mod)
            self.models.append(mod)
            if getattr(self, "has_queue", False) == "model":  # typed bool, but "model" when queued per model
                self._transition_queue_dict[id(mod)] = deque()

    @property
    def _model_ids(self) -> set[int]:
        ids = self.__dict__.get("_ids")
        if ids is None:
            ids = self.__dict__["_ids"] = set()
        return ids

    def plain_table(self) -> dict[tuple[str, str], list[Any]] | None:
        """``(trigger, source) -> [transition, ...]`` (in the library's order) when every transition is plain.

        Plain: synchronous string-named guards and ``before`` callbacks on the model, and no state, machine or
        ``after``/``prepare`` callback anywhere (the lifecycle's definition today). Then :func:`fire` decides
        a transition itself: the library's async trigger (event data, callback lists and three awaited
        gathers per event) was about 8 % of a simulation's CPU (issue #11). None: use the library.
        """
        if "_plain" not in self.__dict__:
            self.__dict__["_plain"] = self._build_plain_table()
        return cast("dict[tuple[str, str], list[Any]] | None", self.__dict__["_plain"])

    def _build_plain_table(self) -> dict[tuple[str, str], list[Any]] | None:
        machine_callbacks = (
            self.before_state_change,
            self.after_state_change,
            self.prepare_event,
            self.finalize_event,
            self.on_exception,
        )
        if any(machine_callbacks) or any(s.on_enter or s.on_exit for s in self.states.values()):
            return None
        table: dict[tuple[str, str], list[Any]] = {}
        for trigger, event in self.events.items():
            for source, transitions in event.transitions.items():
                for t in transitions:
                    names = [c.func for c in t.conditions] + list(t.before)
                    if t.after or t.prepare:  # ``unless`` guards are conditions with target False
                        return None
                    if not all(isinstance(n, str) for n in names):
                        return None
                table[(trigger, source)] = list(transitions)
        return table


class _Event:
    """What a guard or callback is given (``send_event=True``): the transition and the trigger's kwargs."""

    __slots__ = ("transition", "kwargs")

    def __init__(self, transition: Any, kwargs: dict[str, object]) -> None:
        self.transition = transition
        self.kwargs = kwargs


def _fire_plain(
    table: dict[tuple[str, str], list[Any]], model: NodeModel, trigger: str, kwargs: dict[str, object]
) -> bool:
    """The library's semantics for plain transitions: the first whose guards all hold runs (``before``, then
    the state). False: ``trigger`` is not legal from the model's state."""
    transitions = table.get((trigger, model.state))
    if transitions is None:
        return False
    for t in transitions:
        event = _Event(t, kwargs)
        if all(bool(getattr(model, c.func)(event)) == c.target for c in t.conditions):
            for name in t.before:
                getattr(model, name)(event)
            model.state = t.dest
            break
    return True


def build_machine() -> AsyncMachine:
    return NodeMachine(
        model=None,
        states=list(STATES),
        transitions=TRANSITIONS,
        initial=NEW,
        auto_transitions=False,
        model_override=True,
        # Not queued: one asyncio task drives each node, so a model's events never overlap,
        # and a per-model queue (queued="model") would cost ~0.8 KB per node for nothing.
        queued=False,
        send_event=True,
        ignore_invalid_triggers=False,
    )


async def fire(machine: AsyncMachine, model: NodeModel, trigger: str, **kwargs: object) -> None:
    """Fire ``trigger`` on ``model``; raise ``TransitionError`` when it is illegal or a guard says no."""
    before = model.state
    table = machine.plain_table() if isinstance(machine, NodeMachine) else None
    if table is not None:
        if not _fire_plain(table, model, trigger, kwargs):
            raise TransitionError(f"node {model.name}: event {trigger!r} is not allowed from state {before!r}")
    else:
        await _fire_library(machine, model, trigger, before, kwargs)
    if model.state == before:
        raise TransitionError(
            f"node {model.name}: event {trigger!r} refused from state {before!r} by its guard "
            f"({kwargs or 'no arguments'})"
        )


async def _fire_library(
    machine: AsyncMachine, model: NodeModel, trigger: str, before: str, kwargs: dict[str, object]
) -> None:
    try:
        # A refused guard is seen by the state not changing (every transition moves); the
        # return value would only say "processed" if the machine were ever queued.
        await machine.events[trigger].trigger(model, **kwargs)
    except Exception as exc:  # transitions raises MachineError for an illegal source state
        if exc.__class__.__name__ == "MachineError":
            raise TransitionError(f"node {model.name}: event {trigger!r} is not allowed from state {before!r}") from exc
        raise
