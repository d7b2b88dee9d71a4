"""The batching of the vSphere adapter's reads: shared round trips, never a read from before the request."""

from __future__ import annotations

import asyncio
import dataclasses
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
    with in_flight.track():  # never left while settle() runs: only giving up can end it
        start = time.monotonic()
        # It gives up: a call that never returns holds nothing up. Without giving up settle() never returns, so
        # the bound only tells that apart; a tight one (max_wait_s + 0.5 s) is one a loaded machine could break.
        await asyncio.wait_for(in_flight.settle(), 60)
        waited = time.monotonic() - start
    assert waited >= max_wait_s  # and not before max_wait_s (the monotonic clock never runs short)


@pytest.mark.parametrize(
    "learned",
    [
        "added",  # imported and tagged here while the read was under way: found after it
        "removed",  # removed here while the read was under way: not found after it
    ],
)
async def test_what_is_learned_during_a_read_of_every_brief_outlives_it(learned: str) -> None:
    """A VM this adapter adds or removes while every VM's brief is being read keeps that fate in the briefs kept from
    the read, which may predate it."""
    from types import SimpleNamespace

    from adapters.vsphere._reads import Briefs, VmReader
    from adapters.vsphere._vm_records import IDENTITY_FIELD, VmBrief

    vm = VmBrief(
        moref="vm-9",
        name="pexip-x",
        custom={IDENTITY_FIELD: "dep/pexip-x"},
        power_state="poweredOff",
        host=None,
        num_cpus=1,
        memory_mb=1024,
    )
    gate, began = asyncio.Event(), asyncio.Event()

    async def fetch() -> Briefs:
        # Stands in for the RetrievePropertiesEx of every brief: vcsim cannot be held mid-read while a VM is made.
        started = time.monotonic()
        began.set()
        await gate.wait()
        shown = {} if learned == "added" else {vm.moref: dataclasses.replace(vm, fetched_at=started)}
        return Briefs(vms=shown, fields={IDENTITY_FIELD: 1}, fetched_at=started, generation=1)

    reader = VmReader(SimpleNamespace(generation=1), lambda content: None)  # type: ignore[arg-type]
    reader._brief_reads = FreshRead(fetch)
    reading = asyncio.ensure_future(reader.briefs())
    await began.wait()
    if learned == "added":
        reader.added(vm.moref, vm.name, "dep/pexip-x")
    else:
        reader.removed(vm.moref)
    gate.set()
    await reading
    kept = reader.last_briefs
    assert kept is not None
    assert kept.lookup(identity="dep/pexip-x", name="pexip-x") == ([vm.moref] if learned == "added" else [])
