"""Prometheus text exposition computed from the journal (read only; a fresh registry per scrape).

One metric is this process's, not the journal's: ``orchestrator_journal_commit_seconds``, how long
its journal commits took (``journal.COMMIT_LATENCY``; the daemon's steps, or the approvals ``serve`` takes).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric

from journal import COMMIT_LATENCY, Journal, kinds

__all__ = ["render"]

_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class _CommitLatency:
    """The process's journal commit latency (a collector: its buckets are counted by ``journal``)."""

    def collect(self) -> Iterator[Metric]:
        cumulative, total, _ = COMMIT_LATENCY.snapshot()
        yield HistogramMetricFamily(
            "orchestrator_journal_commit_seconds",
            "Journal commits of this process: BEGIN IMMEDIATE to a durable COMMIT",
            buckets=[(_le(bound), count) for bound, count in cumulative],
            sum_value=total,
        )


def render(journal: Journal, rows: list[dict[str, Any]]) -> bytes:
    """Nodes by state, transitions, step durations, retries, failures, drift, gate waits (from ``status`` rows),
    and this process's journal commit latency."""
    reg = CollectorRegistry()
    reg.register(_CommitLatency())
    nodes = Gauge("orchestrator_nodes", "Nodes by lifecycle state", ["state"], registry=reg)
    waiting = Gauge("orchestrator_nodes_waiting_on_gate", "Nodes waiting on a gate", ["gate"], registry=reg)
    transitions = Counter("orchestrator_transitions", "Committed steps (state transitions)", registry=reg)
    retries = Counter("orchestrator_step_retries", "Step attempts retried", registry=reg)
    failures = Counter("orchestrator_step_failures", "Steps failed", registry=reg)
    drift = Counter(
        "orchestrator_drift", "Completed steps a refresh found changed (drift_detected)", ["step"], registry=reg
    )
    durations = Histogram(
        "orchestrator_step_duration_seconds", "step_started to step_committed", ["step"], buckets=_BUCKETS, registry=reg
    )
    for row in rows:
        nodes.labels(row["state"]).inc()
        if row["gate"]:
            waiting.labels(row["gate"]).inc()
    started: dict[tuple[str | None, str | None], datetime] = {}
    wanted = (kinds.STEP_STARTED, kinds.STEP_COMMITTED, kinds.STEP_RETRY, kinds.STEP_FAILED, kinds.DRIFT_DETECTED)
    for event in journal.events(kinds=wanted):
        key = (event.node, event.step)
        if event.kind == kinds.STEP_STARTED:
            started.setdefault(key, _at(event.at))
        elif event.kind == kinds.STEP_COMMITTED:
            transitions.inc()
            begun = started.pop(key, None)
            if begun is not None:
                durations.labels(event.step or "").observe(max(0.0, (_at(event.at) - begun).total_seconds()))
        elif event.kind == kinds.STEP_RETRY:
            retries.inc()
        elif event.kind == kinds.DRIFT_DETECTED:
            drift.labels(event.step or "").inc()
        else:
            failures.inc()
            started.pop(key, None)
    return generate_latest(reg)
