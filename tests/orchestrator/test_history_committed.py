"""The engine's history of committed steps per milestone attempt (orchestrator._history), kept as bits per node."""

from __future__ import annotations

from journal import Transition, kinds
from machines.lifecycle import STEPS
from orchestrator._history import History

HARDENED = STEPS["management"]["hardened"]
CERTIFIED = STEPS["management"]["certified"]


def _history() -> History:
    return History({"pexip-mgr": "management", "pexip-conf-00001": "conferencing"})


def _commit(history: History, node: str, step: str) -> None:
    history.track(Transition(node=node, kind=kinds.STEP_COMMITTED, step=step))


def test_a_milestone_misses_exactly_the_steps_without_a_commit_in_its_attempt() -> None:
    """Steps committed are known per node; the others (and only they) are missing, in the lifecycle's order."""
    history = _history()
    assert history.missing("pexip-mgr", "hardened", HARDENED[-1]) == list(HARDENED[:-1])
    for step in HARDENED[:2]:
        _commit(history, "pexip-mgr", step)
    assert history.missing("pexip-mgr", "hardened", HARDENED[-1]) == list(HARDENED[2:-1])
    assert history.committed("pexip-mgr") == frozenset(HARDENED[:2])
    assert history.committed("pexip-conf-00001") == frozenset()  # another node's commits are its own


def test_a_new_attempt_of_a_milestone_forgets_its_steps_and_keeps_the_others() -> None:
    """milestone_started drops that milestone's steps only; a rewind drops the step and those after it."""
    history = _history()
    for step in (*HARDENED, *CERTIFIED):
        _commit(history, "pexip-mgr", step)
    history.track(Transition(node="pexip-mgr", kind=kinds.MILESTONE_STARTED, to_state="certifying"))
    assert history.committed("pexip-mgr") == frozenset(HARDENED)
    for step in CERTIFIED:
        _commit(history, "pexip-mgr", step)
    history.track(Transition(node="pexip-mgr", kind=kinds.REWOUND, step=CERTIFIED[1]))
    assert history.committed("pexip-mgr") == frozenset((*HARDENED, CERTIFIED[0]))
    assert history.missing("pexip-mgr", "certified", CERTIFIED[-1]) == list(CERTIFIED[1:-1])


def test_a_step_the_lifecycle_does_not_name_is_kept_apart() -> None:
    """A journaled step of another lifecycle version is remembered without standing in for any of this one's."""
    history = _history()
    _commit(history, "pexip-mgr", "an_older_step")
    assert history.committed("pexip-mgr") == frozenset({"an_older_step"})
    assert history.missing("pexip-mgr", "hardened", HARDENED[-1]) == list(HARDENED[:-1])
