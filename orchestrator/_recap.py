"""The recap at the end of a run (Ansible's PLAY RECAP): per node ok / changed / retried / waiting / failed.

Counted from the journal's events of this run (those after the seq the run started at), so a
recap says what the journal says; it is journaled itself as one run-level ``run_recap`` event.
Example::

    since = begin(journal)
    report = await engine.run(...)
    report.recap = finish(journal, since, report, actor="orchestrator")
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from journal import Journal, kinds
from machines.lifecycle import FAILED

if TYPE_CHECKING:
    from orchestrator.engine import RunReport

__all__ = ["Start", "begin", "finish", "recap"]

_WAITING = {"wait", "blocked", "held"}


@dataclass(frozen=True)
class Start:
    """Where a run started: the journal's last seq, the time (to read only the run's events) and the monotonic clock."""

    seq: int
    at: datetime
    clock: float


def begin(journal: Journal) -> Start:
    """Mark the start of a run (before its first event)."""
    return Start(journal.statistics()["last_seq"], datetime.now(UTC), time.monotonic())


_COUNTED = (kinds.STEP_COMMITTED, kinds.STEP_RETRY)


def _seconds(first: str, last: str) -> float:
    try:
        return round((datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds(), 3)
    except ValueError:
        return 0.0


def recap(journal: Journal, start: Start, report: RunReport) -> dict[str, Any]:
    """``{"nodes": {node: counts}, "totals": counts, "wall_s"}`` of the run that started at ``start``.

    A node's counts: ``ok`` (steps found right), ``changed`` (steps that changed the world),
    ``retried`` (attempts retried), ``waiting`` and ``failed`` (1 when it ended so),
    ``steps_changed`` (their names) and ``duration_s`` (its first to last event of the run).
    """
    states = journal.node_states()
    nodes: dict[str, dict[str, Any]] = {
        name: {"ok": 0, "changed": 0, "retried": 0, "waiting": 0, "failed": 0, "steps_changed": [], "duration_s": 0.0}
        for name in report.outcomes
    }
    # The spans grouped by SQLite, and only the rows counted read back (issue #11: 33,000 events of a 1000-node
    # simulation, 12,000 of them counted; the recap was the run's peak of memory).
    spans = journal.spans(start.seq)
    for _, node, kind, step, _at, changed in journal.tallies(start.seq, _COUNTED):  # no payload decoded (#11)
        if node not in nodes:
            continue
        row = nodes[node]
        if kind == kinds.STEP_COMMITTED:
            if changed:
                row["changed"] += 1
                row["steps_changed"].append(sys.intern(step) if step else step)  # one string (#11)
            else:
                row["ok"] += 1
        elif kind == kinds.STEP_RETRY:
            row["retried"] += 1
    # Most nodes change the same steps: one list of each (issue #11: a list per node was ~0.13 MB of a
    # 1000-node run's recap, held to its end). Read only: the recap is journaled and printed, never edited.
    lists: dict[tuple[str | None, ...], list[str | None]] = {}
    for row in nodes.values():
        row["steps_changed"] = lists.setdefault(tuple(row["steps_changed"]), row["steps_changed"])
    for name, action in report.outcomes.items():
        row = nodes[name]
        row["failed"] = int(states.get(name) == FAILED)
        row["waiting"] = int(not row["failed"] and type(action).__name__.lower() in _WAITING)
        if name in spans:
            row["duration_s"] = _seconds(*spans[name])
    totals = {key: sum(n[key] for n in nodes.values()) for key in ("ok", "changed", "retried", "waiting", "failed")}
    return {"nodes": nodes, "totals": totals, "wall_s": round(time.monotonic() - start.clock, 3)}


def finish(
    journal: Journal, start: Start, report: RunReport, *, actor: str, closing: Callable[[], object] | None = None
) -> dict[str, Any]:
    """The run's recap, journaled as a run-level ``run_recap`` event.

    ``closing``: the run's closing checkpoint (``Checkpointer.close_run``), called right after the recap is
    written and before it is committed: in the run's hold (``Engine.run(recap_follows=True)``) the last step's
    commit, the leases' release, the recap and the checkpoint are one durable transaction (issue #11).
    """
    summary = recap(journal, start, report)
    with journal.batch():  # in a hold, a savepoint of it: the hold's transaction stays open for ``closing``
        journal.append(node=None, kind=kinds.RUN_RECAP, actor=actor, payload=summary)  # the seq only: no decoded copy
    if closing is not None:
        closing()
    journal.release()  # durable when this returns: with the closing checkpoint, or else here
    return summary
