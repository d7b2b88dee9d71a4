"""How long this process's journal commits take (BEGIN IMMEDIATE to a durable COMMIT), as a histogram.

Fixed buckets, so the memory does not grow with the commits. Process-wide: every
:class:`~journal.Journal` of the process adds to it; ``/metrics`` of the daemon (or of
``serve``, whose only commits are approvals) shows it as ``orchestrator_journal_commit_seconds``.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["BUCKETS", "COMMIT_LATENCY", "CommitLatency"]

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class CommitLatency:
    """Counts per bucket, sum and count of the commits that succeeded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * (len(BUCKETS) + 1)  # the last one: above every bucket
        self._sum = 0.0

    @contextmanager
    def timed(self) -> Iterator[None]:
        """Time the block; a block that raises (nothing was written) is not counted."""
        start = time.perf_counter()
        yield
        self.observe(time.perf_counter() - start)

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sum += seconds

    def snapshot(self) -> tuple[list[tuple[float, int]], float, int]:
        """(cumulative count up to each bucket's upper bound, with +inf last), sum, count."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return cumulative, total, running


COMMIT_LATENCY = CommitLatency()
