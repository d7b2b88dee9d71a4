"""Per-node leases: exclusive, all or nothing, taken over only when stale."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from config.errors import JournalError, ResourceLocked
from journal import Journal, new_lease_owner

HOST = socket.gethostname()


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_owner_string_names_host_and_pid() -> None:
    """new_lease_owner() is host:pid:uuid."""
    host, pid, token = new_lease_owner().rsplit(":", 2)
    assert host == HOST and int(pid) == os.getpid() and len(token) == 36


def test_second_owner_is_refused_with_pid_and_since(journal: Journal) -> None:
    """A live holder's lease raises ResourceLocked naming node, pid and since; no silent wait."""
    first = new_lease_owner()
    journal.acquire_leases(["mgr", "conf-1"], owner=first, pid=os.getpid())
    since = journal.node("mgr").lease_since  # type: ignore[union-attr]
    started = time.monotonic()
    with pytest.raises(ResourceLocked) as caught:
        journal.acquire_leases(["conf-1"], owner=new_lease_owner(), pid=os.getpid())
    # No wait for the live lease to turn stale (timeout_s, 60 s by default): the bound only tells a refusal at once
    # apart from such a wait; a tight one (1 s) is one a loaded machine's write transaction could break.
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert f"node conf-1 is locked by pid {os.getpid()}" in message and f"since {since}" in message
    assert (caught.value.node, caught.value.owner, caught.value.pid) == ("conf-1", first, os.getpid())


def test_acquire_is_all_or_nothing(journal: Journal) -> None:
    """When one node is held, none of the others is taken."""
    journal.acquire_leases(["conf-2"], owner=new_lease_owner(), pid=os.getpid())
    with pytest.raises(ResourceLocked):
        journal.acquire_leases(["mgr", "conf-1", "conf-2"], owner=new_lease_owner(), pid=os.getpid())
    assert journal.node("mgr").lease_owner is None  # type: ignore[union-attr]
    assert journal.node("conf-1").lease_owner is None  # type: ignore[union-attr]


def test_dead_pid_lease_is_taken_over(journal: Journal) -> None:
    """A lease whose process has exited on this host is stale and taken over."""
    pid = _dead_pid()
    journal.acquire_leases(["mgr"], owner=f"{HOST}:{pid}:dead-run", pid=pid)
    mine = new_lease_owner()
    journal.acquire_leases(["mgr"], owner=mine, pid=os.getpid())
    node = journal.node("mgr")
    assert node is not None and (node.lease_owner, node.lease_pid) == (mine, os.getpid())


def test_clear_stale_leases(journal: Journal) -> None:
    """clear_stale_leases releases only leases of dead processes on this host."""
    pid = _dead_pid()
    journal.acquire_leases(["mgr"], owner=f"{HOST}:{pid}:dead-run", pid=pid)
    journal.acquire_leases(["conf-1"], owner=new_lease_owner(), pid=os.getpid())
    journal.acquire_leases(["conf-2"], owner=f"other-host:{pid}:remote-run", pid=pid)
    assert journal.clear_stale_leases() == ["mgr"]
    assert [n.lease_owner is not None for n in journal.nodes()] == [False, True, True]


def test_expired_heartbeat_is_taken_over(journal: Journal) -> None:
    """A live holder whose heartbeat is older than the timeout loses the lease."""
    journal.acquire_leases(["mgr"], owner=f"other-host:{os.getpid()}:x", pid=os.getpid())
    time.sleep(0.05)
    with pytest.raises(ResourceLocked):
        journal.acquire_leases(["mgr"], owner=new_lease_owner(), pid=os.getpid(), timeout_s=30)
    mine = new_lease_owner()
    journal.acquire_leases(["mgr"], owner=mine, pid=os.getpid(), timeout_s=0.01)
    assert journal.node("mgr").lease_owner == mine  # type: ignore[union-attr]


def test_a_live_holder_on_this_host_is_never_taken_over(journal: Journal, attacker: sqlite3.Connection) -> None:
    """A holder alive on this host keeps its lease however late its heartbeat: two processes never drive one node."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        journal.acquire_leases(["mgr"], owner=f"{HOST}:{holder.pid}:live-run", pid=holder.pid)
        attacker.execute("UPDATE nodes SET heartbeat = '2000-01-01T00:00:00.000000Z' WHERE name = 'mgr'")
        with pytest.raises(ResourceLocked):
            journal.acquire_leases(["mgr"], owner=new_lease_owner(), pid=os.getpid(), timeout_s=0.01)
        assert journal.node("mgr").lease_pid == holder.pid  # type: ignore[union-attr]
        assert journal.clear_stale_leases() == []
    finally:
        holder.kill()
        holder.wait()
    mine = new_lease_owner()
    journal.acquire_leases(["mgr"], owner=mine, pid=os.getpid())  # gone now: stale
    assert journal.node("mgr").lease_owner == mine  # type: ignore[union-attr]


def test_a_pid_reused_since_the_lease_was_taken_is_not_the_holder(
    journal: Journal, attacker: sqlite3.Connection
) -> None:
    """A lease of this host whose pid now belongs to a process started after the lease is stale."""
    journal.acquire_leases(["mgr"], owner=f"{HOST}:{os.getpid()}:old-run", pid=os.getpid())
    attacker.execute("UPDATE nodes SET lease_since = '2000-01-01T00:00:00.000000Z' WHERE name = 'mgr'")
    mine = new_lease_owner()
    journal.acquire_leases(["mgr"], owner=mine, pid=os.getpid())
    assert journal.node("mgr").lease_owner == mine  # type: ignore[union-attr]


def test_heartbeat_keeps_the_lease(journal: Journal, attacker: sqlite3.Connection) -> None:
    """heartbeat() refreshes every lease of the owner, so a timeout does not expire it."""
    holder = f"other-host:{os.getpid()}:x"
    journal.acquire_leases(["mgr", "conf-1"], owner=holder, pid=os.getpid())
    attacker.execute("UPDATE nodes SET heartbeat = '2000-01-01T00:00:00.000000Z' WHERE lease_owner IS NOT NULL")
    journal.heartbeat(holder)
    with pytest.raises(ResourceLocked):
        journal.acquire_leases(["conf-1"], owner=new_lease_owner(), pid=os.getpid(), timeout_s=60)
    beats = {n.name: n.heartbeat for n in journal.nodes()}
    assert beats["mgr"] == beats["conf-1"] and beats["mgr"] > "2000"  # type: ignore[operator]
    assert beats["conf-2"] is None


def test_other_host_dead_looking_pid_is_not_stale(journal: Journal) -> None:
    """A pid from another host cannot be checked here: only its heartbeat can expire it."""
    pid = _dead_pid()
    journal.acquire_leases(["mgr"], owner=f"other-host:{pid}:x", pid=pid)
    with pytest.raises(ResourceLocked):
        journal.acquire_leases(["mgr"], owner=new_lease_owner(), pid=os.getpid())


def test_release_and_reacquire(journal: Journal) -> None:
    """release_leases frees every lease of the owner; re-acquiring one's own keeps since."""
    first, second = new_lease_owner(), new_lease_owner()
    journal.acquire_leases(["mgr", "conf-1"], owner=first, pid=os.getpid())
    since = journal.node("mgr").lease_since  # type: ignore[union-attr]
    time.sleep(0.002)
    journal.acquire_leases(["mgr"], owner=first, pid=os.getpid())
    assert journal.node("mgr").lease_since == since  # type: ignore[union-attr]
    journal.release_leases(first)
    assert all(n.lease_owner is None and n.heartbeat is None for n in journal.nodes())
    journal.acquire_leases(["mgr", "conf-1"], owner=second, pid=os.getpid())
    assert {n.lease_owner for n in journal.nodes()} == {second, None}


def test_leases_do_not_touch_the_chain(journal: Journal) -> None:
    """Leases are not events: acquiring and releasing leaves the chain and verify as they were."""
    owner = new_lease_owner()
    journal.acquire_leases(["mgr"], owner=owner, pid=os.getpid())
    journal.heartbeat(owner)
    journal.release_leases(owner)
    assert journal.statistics()["events"] == 3 and journal.verify().ok


@pytest.mark.parametrize(
    ("nodes", "kwargs", "error", "text"),
    [
        (["ghost"], {}, JournalError, "node 'ghost' is not in the journal"),  # unknown node
        ("mgr", {}, TypeError, "not the string"),  # a str, not a list
        (["mgr"], {"timeout_s": 0}, ValueError, "timeout_s must be > 0"),  # no timeout
    ],
)
def test_bad_acquire_arguments(journal: Journal, nodes: object, kwargs: dict, error: type, text: str) -> None:
    """Bad arguments are named and take nothing."""
    with pytest.raises(error, match=text):
        journal.acquire_leases(nodes, owner=new_lease_owner(), pid=os.getpid(), **kwargs)  # type: ignore[arg-type]
    assert all(n.lease_owner is None for n in journal.nodes())
