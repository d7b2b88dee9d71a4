"""All or nothing: a commit that fails anywhere leaves the journal exactly as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from config.errors import JournalError
from journal import Journal, Signer, Transition


def _snapshot(db: sqlite3.Connection) -> tuple[object, ...]:
    return (
        db.execute("SELECT * FROM events ORDER BY seq").fetchall(),
        db.execute("SELECT * FROM nodes ORDER BY rowid").fetchall(),
        db.execute("SELECT value FROM meta WHERE name = 'head'").fetchone(),
    )


GOOD_A = Transition(
    node="mgr", kind="step_committed", from_state="deployed", to_state="reserved", update={"step": None}
)
GOOD_B = Transition(node="conf-1", kind="gate_waiting", update={"gate": "approval"})
GHOST = Transition(node="ghost", kind="step_committed", to_state="reserved")
BAD_COLUMN = Transition(node="conf-2", kind="x", update={"last_seq": 99})


@pytest.mark.parametrize(
    ("batch", "error"),
    [
        ([GHOST, GOOD_A, GOOD_B], JournalError),  # unknown node first
        ([GOOD_A, GHOST, GOOD_B], JournalError),  # unknown node in the middle
        ([GOOD_A, GOOD_B, GHOST], JournalError),  # unknown node last
        ([GOOD_A, BAD_COLUMN, GOOD_B], ValueError),  # a column the journal owns
        ([GOOD_A, "not a transition"], TypeError),  # not a Transition at all
    ],
)
def test_failed_commit_writes_nothing(
    journal: Journal, attacker: sqlite3.Connection, batch: list[Transition], error: type
) -> None:
    """No event, no node change, the same seal: then the next commit continues cleanly."""
    before = _snapshot(attacker)
    with pytest.raises(error):
        journal.commit(batch)
    assert _snapshot(attacker) == before
    events = journal.commit([GOOD_A, GOOD_B])
    assert [e.seq for e in events] == [4, 5]
    assert journal.verify().ok


def test_unknown_node_message_names_it(journal: Journal) -> None:
    """The error names the node and how to register it."""
    with pytest.raises(JournalError, match=r"node 'ghost' .* ensure_nodes\(\)"):
        journal.commit([GOOD_A, GHOST])


def test_sql_failure_mid_commit_rolls_back(journal: Journal, attacker: sqlite3.Connection) -> None:
    """An error raised by SQLite itself halfway through the writes fails the whole commit."""
    # A trigger stands in for any SQLite failure (disk full, I/O error) after the events went in.
    attacker.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE ON nodes WHEN NEW.name = 'conf-2' "
        "BEGIN SELECT RAISE(ABORT, 'simulated failure'); END"
    )
    before = _snapshot(attacker)
    with pytest.raises(JournalError, match="simulated failure.*nothing was written"):
        journal.commit([GOOD_A, GOOD_B, Transition(node="conf-2", kind="x", update={"gate": "g"})])
    assert _snapshot(attacker) == before
    attacker.execute("DROP TRIGGER refuse")
    assert [e.seq for e in journal.commit([GOOD_A])] == [4]
    assert journal.verify().ok


def test_ensure_nodes_is_one_transaction(journal: Journal, attacker: sqlite3.Connection) -> None:
    """A bad entry in ensure_nodes registers none of the batch."""
    before = _snapshot(attacker)
    with pytest.raises(ValueError, match="role"):
        journal.ensure_nodes([("conf-3", "conferencing", "deployed"), ("conf-4", "", "deployed")])
    assert _snapshot(attacker) == before


def test_threads_share_one_journal(journal: Journal) -> None:
    """Commits from several threads (as from asyncio.to_thread) are serialised cleanly."""
    import threading

    def work(node: str) -> None:
        for i in range(40):
            journal.record(node=node, kind="tick", attempt=i)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("mgr", "conf-1", "conf-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert journal.statistics()["events"] == 3 + 120
    assert journal.verify().ok


def test_a_batch_is_one_durable_commit_and_each_write_in_it_stays_all_or_nothing(
    journal: Journal, journal_path: Path
) -> None:
    """Inside batch() writes are savepoints: a failed one is undone alone, the rest lands in one commit at the end."""
    other = sqlite3.connect(journal_path)
    before = _snapshot(other)
    with journal.batch():
        journal.commit([GOOD_A])
        with pytest.raises(JournalError):
            journal.commit([GOOD_B, GHOST])  # undone alone: GOOD_B is not written
        journal.set_meta("note", "inside")
        assert _snapshot(other) == before  # nothing durable yet: the other connection sees nothing
    after = [row[3] for row in other.execute("SELECT * FROM events ORDER BY seq").fetchall()]
    assert after[-1] == "step_committed" and "gate_waiting" not in after
    assert journal.get_meta("note") == "inside" and journal.verify().ok


def test_a_batch_that_raises_writes_nothing_and_refuses_a_checkpoint(journal: Journal, journal_path: Path) -> None:
    """An exception out of batch() rolls back every write in it; a checkpoint cannot be signed inside one."""
    other = sqlite3.connect(journal_path)
    before = _snapshot(other)
    with pytest.raises(RuntimeError, match="inside batch"):
        with journal.batch():
            journal.commit([GOOD_A])
            journal.checkpoint(Signer.generate())
    assert _snapshot(other) == before
    journal.commit([GOOD_B])  # the journal goes on from the head it really has
    assert journal.verify().ok


STARTED = Transition(node="mgr", kind="step_started", step="reserve_resources", update={"step": "reserve_resources"})
OPENING = Transition(node=None, kind="run_started", payload={"command": "run"})


def test_a_hold_rides_in_the_next_commit_that_needs_durability(journal: Journal, journal_path: Path) -> None:
    """hold(): opening records and meta wait, seen by this connection only, until a commit of another kind."""
    other = sqlite3.connect(journal_path)
    before = _snapshot(other)
    journal.hold()
    journal.commit([OPENING])  # a run's opening record: not durable on its own
    journal.set_meta("simulation", "{}")
    journal.acquire_leases(["mgr"], owner="me", pid=1)
    assert [e.kind for e in journal.events()][-1] == "run_started"  # this connection reads its own writes
    assert journal.statistics()["last_seq"] == 4
    assert _snapshot(other) == before  # nothing durable yet
    journal.commit([STARTED])  # needs durability: everything held lands with it, in its transaction
    kinds_seen = [row[3] for row in other.execute("SELECT * FROM events ORDER BY seq").fetchall()]
    assert kinds_seen[-2:] == ["run_started", "step_started"]
    assert other.execute("SELECT value FROM meta WHERE name = 'simulation'").fetchone() == ("{}",)
    journal.commit([GOOD_A])  # the hold is over: an ordinary commit
    assert other.execute("SELECT count(*) FROM events").fetchone() == (6,)
    assert journal.verify().ok


def test_a_hold_is_committed_by_release_close_or_checkpoint_and_a_refused_batch_in_it_undone(
    journal: Journal, journal_path: Path
) -> None:
    other = sqlite3.connect(journal_path)
    journal.hold()
    with pytest.raises(ValueError):
        with journal.batch():  # a savepoint of the hold: undone alone
            journal.set_meta("note", "undone")
            raise ValueError("refused")
    journal.commit([OPENING])
    journal.release()
    assert other.execute("SELECT count(*) FROM events").fetchone() == (4,)
    assert journal.get_meta("note") is None
    journal.hold()
    journal.set_meta("note", "kept")
    journal.checkpoint(Signer.generate())  # signs only what is durable: the hold is committed first
    assert other.execute("SELECT value FROM meta WHERE name = 'note'").fetchone() == ("kept",)
    journal.hold()
    journal.commit([OPENING])
    journal.close()
    assert other.execute("SELECT count(*) FROM events").fetchone() == (5,)
