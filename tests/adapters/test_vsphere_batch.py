"""The batching of the vSphere adapter's reads: shared round trips, never a read from before the request."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.vsphere._batch import BatchRead, FreshRead, InFlight


class Counter:
    """A fetch that records when each read starts and what it was asked for."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.started: list[float] = []
        self.asked: list[frozenset[str]] = []

    async def fetch(self) -> float:
        self.started.append(time.monotonic())
        await asyncio.sleep(self.delay)
        return self.started[-1]

    async def fetch_keys(self, keys: frozenset[str]) -> dict[str, int]:
        self.asked.append(keys)
        await asyncio.sleep(self.delay)
        return {k: len(self.asked) for k in keys}


async def test_callers_before_the_read_starts_share_it() -> None:
    """Callers in the same turn of the event loop get one read, all of it fetched after they asked."""
    reads = Counter()
    fresh = FreshRead(reads.fetch)
    asked = time.monotonic()
    results = await asyncio.gather(*(fresh.get() for _ in range(10)))
    assert fresh.fetches == 1
    assert all(r >= asked for r in results)


async def test_a_caller_during_a_read_gets_the_next_one() -> None:
    """A caller that asks while a read is under way is served by a read that starts after it asked."""
    reads = Counter(delay=0.05)
    fresh = FreshRead(reads.fetch)
    first = asyncio.ensure_future(fresh.get())
    await asyncio.sleep(0.01)  # the first read is under way
    asked = time.monotonic()
    second = await fresh.get()
    assert second >= asked
    assert await first < asked
    assert fresh.fetches == 2


async def test_keys_asked_together_are_read_together() -> None:
    """BatchRead reads every key asked before the read starts in one fetch, and gives each caller its own keys."""
    reads = Counter()
    batch: BatchRead[str, int] = BatchRead(reads.fetch_keys)
    got = await asyncio.gather(batch.get({"vm-1"}), batch.get({"vm-2", "task-9"}), batch.get({"vm-1"}))
    assert reads.asked == [frozenset({"vm-1", "vm-2", "task-9"})]
    assert got == [{"vm-1": 1}, {"vm-2": 1, "task-9": 1}, {"vm-1": 1}]


async def test_a_read_waits_for_a_call_in_flight_and_its_follow_up_read_joins() -> None:
    """A read about to start waits for the call in flight; the read that call is followed by shares it."""
    in_flight = InFlight(max_wait_s=1.0)
    reads = Counter()
    batch: BatchRead[str, int] = BatchRead(reads.fetch_keys, in_flight.settle)

    async def write_then_read() -> dict[str, int]:
        with in_flight.track():
            await asyncio.sleep(0.05)  # a write on the wire
        return await batch.get({"task-2"})

    writer = asyncio.ensure_future(write_then_read())
    await asyncio.sleep(0.01)
    mine = await batch.get({"task-1"})
    assert mine == {"task-1": 1}
    assert await writer == {"task-2": 1}
    assert reads.asked == [frozenset({"task-1", "task-2"})]


@pytest.mark.parametrize(
    "max_wait_s",
    [
        0.0,  # no waiting at all: the read goes at once
        0.05,  # a slow call holds the read up no longer than this
    ],
)
async def test_a_slow_call_holds_reads_up_for_max_wait_at_most(max_wait_s: float) -> None:
    """settle() returns after max_wait_s even while a call stays in flight."""
    in_flight = InFlight(max_wait_s=max_wait_s)
    with in_flight.track():
        start = time.monotonic()
        await in_flight.settle()
        waited = time.monotonic() - start
    assert max_wait_s <= waited < max_wait_s + 0.5  # it gives up: a call that never returns holds nothing up
