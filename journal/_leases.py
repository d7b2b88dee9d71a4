"""Per-node leases: all work on a node runs under its lease.

A lease is four columns of the node's row (owner, pid, since, heartbeat). The owner
string is ``"host:pid:uuid"`` so that a process can tell whether another owner's
process still lives on this host. A lease held by someone else is stale, and taken
over, when its process is gone from this host (or its pid now belongs to a process
started after the lease was taken), or when it was taken on another host and its
heartbeat is older than the timeout. A holder alive on this host is never taken over,
however late its heartbeat. Otherwise the caller gets
:class:`config.errors.ResourceLocked` at once, never a silent wait.

These functions run inside a write transaction that the journal opened.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Sequence

from config.errors import JournalError, ResourceLocked
from journal._time import parse_utc, utc_now
from journal._transactions import Transactions

__all__ = ["new_lease_owner", "pid_alive", "owner_host", "acquire", "clear_stale", "LeaseMethods"]

_REUSE_SLACK_S = 60.0


def _hostname() -> str:
    import socket  # here, not at the top: reading a journal (`status`) starts without it (#11)

    return socket.gethostname()


def new_lease_owner(pid: int | None = None) -> str:
    """A fresh owner string for this process: ``"host:pid:uuid"``."""
    return f"{_hostname()}:{os.getpid() if pid is None else pid}:{uuid.uuid4()}"


def owner_host(owner: str) -> str | None:
    """The host part of an owner string, ``None`` when it is not ``host:pid:uuid``."""
    parts = owner.rsplit(":", 2)
    return parts[0] if len(parts) == 3 else None


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live (not zombie) process on this host."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        # A zombie answers kill(0) but will never touch the journal again.
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from /proc; None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            ticks = int(stat.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as boot:
            btime = next(int(line.split()[1]) for line in boot if line.startswith(b"btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def _holder_alive_here(owner: str, pid: int | None, since: str | None, hostname: str) -> bool | None:
    """Whether the lease's process still lives on this host; None when it ran on another host (cannot tell).

    A pid reused by a process that started after the lease was taken is not the holder.
    """
    if owner_host(owner) != hostname:
        return None
    if not pid_alive(pid):
        return False
    assert pid is not None
    started = _started_at(pid)
    try:
        taken = parse_utc(since).timestamp() if since else None
    except ValueError:
        taken = None
    # Slack for /proc/stat's whole-second btime and a stepped clock: calling a live holder "reused"
    # would let two processes drive one node, while a pid reused within the slack only waits.
    return not (started is not None and taken is not None and started > taken + _REUSE_SLACK_S)


def _dead_here(owner: str, pid: int | None, hostname: str, since: str | None = None) -> bool:
    return _holder_alive_here(owner, pid, since, hostname) is False


def _expired(heartbeat: str | None, timeout_s: float, now: str) -> bool:
    if heartbeat is None:
        return True
    try:
        age = (parse_utc(now) - parse_utc(heartbeat)).total_seconds()
    except ValueError:
        return True  # an unreadable heartbeat proves nothing about a live holder
    return age > timeout_s


def acquire(conn: sqlite3.Connection, nodes: Sequence[str], owner: str, pid: int, timeout_s: float) -> None:
    """Take the leases of ``nodes`` for ``owner``, all or none (caller's transaction)."""
    if isinstance(nodes, str):
        raise TypeError(f"acquire_leases: nodes must be a sequence of names, not the string {nodes!r}")
    wanted = list(dict.fromkeys(nodes))
    if not wanted:
        return
    if timeout_s <= 0:
        raise ValueError(f"acquire_leases: timeout_s must be > 0 (got {timeout_s})")
    now = utc_now()
    hostname = _hostname()
    marks = ",".join("?" * len(wanted))
    rows = {
        row[0]: row[1:]
        for row in conn.execute(
            f"SELECT name, lease_owner, lease_pid, lease_since, heartbeat FROM nodes WHERE name IN ({marks})",
            wanted,
        )
    }
    for name in wanted:
        if name not in rows:
            raise JournalError(
                f"acquire_leases: node {name!r} is not in the journal; register it with ensure_nodes() first"
            )
        held_by, held_pid, since, heartbeat = rows[name]
        if held_by is None or held_by == owner:
            continue
        alive = _holder_alive_here(held_by, held_pid, since, hostname)
        # A holder alive on this host keeps its lease however old its heartbeat (issue #7): a late
        # heartbeat must never let two processes drive one node. Only another host's lease expires.
        if alive is False or (alive is None and _expired(heartbeat, timeout_s, now)):
            continue  # stale: taken over below
        raise ResourceLocked(name, held_by, held_pid, since)
    conn.executemany(
        "UPDATE nodes SET lease_since = CASE WHEN lease_owner IS ? THEN lease_since ELSE ? END, "
        "lease_owner = ?, lease_pid = ?, heartbeat = ? WHERE name = ?",
        [(owner, now, owner, pid, now, name) for name in wanted],
    )


def clear_stale(conn: sqlite3.Connection) -> list[str]:
    """Release leases whose process is dead on this host (caller's transaction)."""
    hostname = _hostname()
    stale = [
        name
        for name, held_by, held_pid, since in conn.execute(
            "SELECT name, lease_owner, lease_pid, lease_since FROM nodes WHERE lease_owner IS NOT NULL ORDER BY rowid"
        )
        if _dead_here(held_by, held_pid, hostname, since)
    ]
    conn.executemany(
        "UPDATE nodes SET lease_owner = NULL, lease_pid = NULL, lease_since = NULL, heartbeat = NULL WHERE name = ?",
        [(name,) for name in stale],
    )
    return stale


class LeaseMethods(Transactions):
    """The lease methods of :class:`journal.Journal` (each one short write transaction)."""

    def acquire_leases(self, nodes: Sequence[str], *, owner: str, pid: int, timeout_s: float = 60.0) -> None:
        """Take the leases of ``nodes`` for ``owner``, all or none, in one transaction.

        A lease held by another owner is taken over when stale: its process is dead on
        this host, or its heartbeat is older than ``timeout_s``. Re-acquiring one's own
        lease refreshes its heartbeat.

        Args:
            owner: ``"host:pid:uuid"`` (see :func:`journal.new_lease_owner`).
            pid: the process that does the work.

        Raises:
            ResourceLocked: a node is held by another live owner (names pid and since).
            JournalError: a node is unknown.
        """
        with self._write("acquire_leases") as conn:
            acquire(conn, nodes, owner, pid, timeout_s)

    def heartbeat(self, owner: str) -> None:
        """Refresh the heartbeat of every lease ``owner`` holds (one UPDATE)."""
        with self._write("heartbeat") as conn:
            conn.execute("UPDATE nodes SET heartbeat = ? WHERE lease_owner = ?", (utc_now(), owner))

    def release_leases(self, owner: str) -> None:
        """Release every lease ``owner`` holds."""
        with self._write("release_leases") as conn:
            conn.execute(
                "UPDATE nodes SET lease_owner = NULL, lease_pid = NULL, lease_since = NULL, "
                "heartbeat = NULL WHERE lease_owner = ?",
                (owner,),
            )

    def clear_stale_leases(self) -> list[str]:
        """Release leases whose process is dead on this host; returns the nodes cleared."""
        with self._write("clear_stale_leases") as conn:
            return clear_stale(conn)
