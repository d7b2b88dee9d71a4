"""What the engine knows of its nodes' past, from the events alone (issue #7).

A node row is a cache of the events: on load the engine derives every node's place
from the events (``journal.derive_nodes``) and refuses to act when the row says
otherwise (someone edited it: skipping the irreversible security wizard took one
``UPDATE nodes SET step=...``). The same pass collects what the rows do not hold:

- which steps of each milestone committed in that milestone's current attempt (since
  its last ``milestone_started``; a ``rewound`` drops the steps it sends back), so a
  milestone completes only when every one of its steps committed;
- the changes that failed attempts of a step applied before they failed, so the step's
  ``step_committed`` lists every change made across its attempts.

The engine feeds each of its own commits back (:meth:`History.track`), so memory and
journal stay one history.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from config.errors import IntegrityError
from journal import Event, Journal, NodeRecord, NodeRecordFields, Transition, derive_nodes, kinds
from machines.lifecycle import STEPS, TARGET_OF

__all__ = [
    "History",
    "MAINTENANCE_MAX_AGE_S",
    "PLACE_COLUMNS",
    "applied_changes",
    "maintenance_of",
    "watch_maintenance",
]

# How old the answer to "did an operator put this node in maintenance?" may be (asked before every step): a mark
# another process committed at least this long before a step's start is decided stops that start. One question's
# PRAGMA data_version then serves the many asked within 1 ms (a group commit's flush resumes hundreds of nodes
# together): 18,007 -> ~3,000 PRAGMAs in a 1000-node simulation (issue #11). `orchestrator maintenance` returns to
# the operator well after its commit (its journal's close, the interpreter's exit), so no start decided after it
# returned is missed; the step in flight ends as before.
MAINTENANCE_MAX_AGE_S = 0.001

# The row columns the engine acts on: each must equal what the events derive.
PLACE_COLUMNS = ("state", "step", "attempt", "gate", "last_error", "failed_from", "maintenance")


def _normal(column: str, value: Any) -> Any:
    if column == "attempt":
        return value or 0
    if column == "maintenance":
        return bool(value)
    return value


class History:
    """Committed steps per milestone attempt and unrecorded-in-commit changes, per node.

    Args:
        roles: node name -> role, for the nodes the engine drives.
    """

    def __init__(self, roles: Mapping[str, str]) -> None:
        self._roles = dict(roles)
        # Per node, the committed steps as bits of one int (issue #11: a set of a node's ~30 steps
        # was ~0.7 KB per node; an int is ~30 bytes). A node without a commit has no entry.
        self._committed: dict[str, int] = {}
        self._bits: dict[str, int] = {}  # step name -> its bit, given on first sight
        self._changes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.last_seq = 0

    # --- load ------------------------------------------------------------------------------

    def load(self, events: Iterable[Event], rows: Iterable[NodeRecord]) -> dict[str, NodeRecordFields]:
        """Replay ``events``; the derived rows of the nodes, once each row is proved equal to them.

        Raises:
            IntegrityError: a node row differs from its events (naming node, column, both values).
        """
        derived = derive_nodes(self._replay(events))
        problems = []
        for row in rows:
            fields = derived.get(row.name)
            if fields is None:
                problems.append(f"node {row.name}: a row without any event")
                continue
            for column in PLACE_COLUMNS:
                have, want = _normal(column, getattr(row, column)), _normal(column, getattr(fields, column))
                if have != want:
                    problems.append(f"node {row.name}: row {column}={have!r} but its events say {want!r}")
        if problems:
            raise IntegrityError(
                "the journal's node rows were changed outside the journal, nothing was done: "
                + "; ".join(problems)
                + "; restore the journal from a verified copy (`orchestrator journal verify` names the events)"
            )
        return derived

    def _replay(self, events: Iterable[Event]) -> Iterator[Event]:
        for e in events:
            self.last_seq = e.seq
            if e.node in self._roles:
                self._feed(e.node, e.kind, e.step, e.to_state, e.payload)
            yield e

    # --- the engine's own commits ------------------------------------------------------------

    def track(self, transition: Transition) -> None:
        """Take one of the engine's committed transitions into the history."""
        if transition.node in self._roles:
            self._feed(transition.node, transition.kind, transition.step, transition.to_state, transition.payload)

    def _feed(self, node: str, kind: str, step: str | None, to_state: str | None, payload: Any) -> None:
        role = self._roles[node]
        if kind == kinds.MILESTONE_STARTED and to_state in TARGET_OF:
            self._drop(node, STEPS[role][TARGET_OF[to_state]])
        elif kind == kinds.REWOUND and step is not None:
            for steps in STEPS[role].values():
                if step in steps:
                    self._drop(node, steps[steps.index(step) :])
        elif kind == kinds.STEP_COMMITTED and step is not None:
            self._committed[node] = self._committed.get(node, 0) | self._bit(step)
            self._changes.pop((node, step), None)
        elif kind in (kinds.STEP_RETRY, kinds.STEP_FAILED) and step is not None and isinstance(payload, dict):
            applied = [*payload.get("changed", []), *payload.get("attempted", [])]
            if applied:
                self._changes.setdefault((node, step), []).extend(applied)

    def _bit(self, step: str) -> int:
        bit = self._bits.get(step)
        if bit is None:
            bit = self._bits[step] = 1 << len(self._bits)
        return bit

    def _drop(self, node: str, steps: Iterable[str]) -> None:
        mask = self._committed.get(node, 0)
        for step in steps:
            mask &= ~self._bit(step)
        self._committed[node] = mask

    # --- questions ---------------------------------------------------------------------------

    def missing(self, node: str, milestone: str, finishing: str) -> list[str]:
        """The steps of ``milestone`` without a commit in its current attempt (``finishing`` commits now)."""
        done = self._committed.get(node, 0) | self._bit(finishing)
        return [s for s in STEPS[self._roles[node]][milestone] if not done & self._bit(s)]

    def committed(self, node: str) -> frozenset[str]:
        """The steps committed in the current attempt of their milestone."""
        mask = self._committed.get(node, 0)
        return frozenset(step for step, bit in self._bits.items() if mask & bit)

    def earlier_changes(self, node: str, step: str) -> list[dict[str, Any]]:
        """The changes earlier attempts of ``step`` applied (or began) and journaled with their retry or failure."""
        return list(self._changes.get((node, step), []))


def applied_changes(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a failed attempt changed, for its ``step_retry``/``step_failed``: ``changed`` once its side
    effects were done, else ``attempted`` (the changes it began to apply; some may have been made)."""
    changes = [c.as_dict() for c in record.get("attempting", ())]
    if not changes:
        return {}
    return {"changed": changes} if record.get("applied") else {"attempted": changes}


def maintenance_of(journal: Journal, node: str) -> bool:
    """Whether the node's newest maintenance event (by anyone, any process) turned maintenance on.

    As of :data:`MAINTENANCE_MAX_AGE_S` ago at the oldest (a mark this process wrote: as of now).
    """
    return journal.latest_kind(node, _MAINTENANCE, max_age_s=MAINTENANCE_MAX_AGE_S) == kinds.MAINTENANCE_ON


def watch_maintenance(journal: Journal) -> None:
    """Before a run's opening hold: its nodes' first questions (all asked inside the hold) are answered from memory."""
    journal.watch_kinds(_MAINTENANCE)


_MAINTENANCE = (kinds.MAINTENANCE_ON, kinds.MAINTENANCE_OFF)
