"""The group commit in a worker thread (GroupCommitter(threaded=True), issue #11): the event loop runs while a COMMIT
waits for its fsync."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from journal import Journal, Transition
from orchestrator._commit import GroupCommitter


async def test_the_loop_runs_during_a_write_and_what_came_meanwhile_lands_together() -> None:
    landed = threading.Event()
    release = threading.Event()
    writes: list[list[int]] = []
    threads: set[str] = set()

    def write(items: list[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        writes.append(items)
        if len(writes) == 1:
            assert release.wait(5), "the loop never got to run while the first write was in flight"
        landed.set()
        return [i * 10 for i in items]

    committer = GroupCommitter(write, threaded=True)
    first = asyncio.ensure_future(committer.commit(1))
    await asyncio.sleep(0.05)  # the first write is in flight, blocked in its thread
    assert writes == [[1]] and not first.done()
    later = asyncio.gather(committer.commit_all([2, 3]), committer.commit(4))  # the loop still runs
    await asyncio.sleep(0.05)
    assert writes == [[1]]  # one flight at a time: they wait for it
    release.set()
    assert await first == 10  # resumed only once its write returned
    assert await later == [[20, 30], 40]
    assert writes == [[1], [2, 3, 4]]  # what came during the flight: one transaction
    assert threading.current_thread().name not in threads


async def test_a_failed_threaded_write_fails_its_waiters_and_the_next_goes_on() -> None:
    calls: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        calls.append(items)
        if items == [1]:
            raise OSError("disk full")
        return items

    committer = GroupCommitter(write, threaded=True)
    outcome = await asyncio.gather(committer.commit(1), return_exceptions=True)
    assert isinstance(outcome[0], OSError)
    assert await committer.commit(2) == 2 and calls == [[1], [2]]


async def test_a_journal_commits_from_the_worker_thread_durably(tmp_path: Path) -> None:
    """The real write: a transition committed through the thread is in the file for another connection."""
    with Journal.open(tmp_path / "j.sqlite") as journal:
        journal.ensure_nodes([("mgr", "management", "deployed")])
        committer = GroupCommitter(journal.commit, threaded=True)
        events = await asyncio.gather(
            *(committer.commit(Transition(node="mgr", kind="note", payload={"n": n})) for n in range(5))
        )
        with Journal.open(tmp_path / "j.sqlite", readonly=True) as other:
            seen = [e.payload.get("n") for e in other.events(node="mgr", kinds=["note"])]
        assert seen == [0, 1, 2, 3, 4] and [e.seq for e in events] == sorted(e.seq for e in events)
        assert journal.verify(chain_only=True).ok
