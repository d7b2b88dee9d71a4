"""A run's periodic checkpoint checked from this connection's previous one (journal/_continued.py, issue #11)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from journal_helpers import walk

import journal._checkpoints as checkpoints_module
from config.errors import IntegrityError
from journal import Journal, Signer, VerifyStatus

SIGNER = Signer.generate()


@pytest.fixture
def long_ways(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many checkpoints took the long way (the whole incremental check)."""
    calls: list[int] = []
    original = checkpoints_module.verify_connection

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(checkpoints_module, "verify_connection", counted)
    return calls


@pytest.fixture
def running(journal: Journal) -> Journal:
    """A journal as a run has it: heads signed, a first checkpoint (the long way), then more events."""
    journal.sign_heads(SIGNER)
    walk(journal, "mgr", ["reserved", "bios_locked"])
    journal.checkpoint(SIGNER)
    walk(journal, "conf-1", ["reserved"])
    return journal


def periodic(j: Journal) -> dict[str, Any]:
    return j.checkpoint(SIGNER, file_check=False, continued=True)


def test_a_periodic_checkpoint_continues_and_what_it_signs_verifies(running: Journal, long_ways: list[int]) -> None:
    periodic(running)
    walk(running, "mgr", ["installed"])
    record = periodic(running)
    assert long_ways == []  # both from this connection's previous checkpoint
    # What it stored and signed is what the long way would: the rows derived from every event.
    stored = running._conn.execute("SELECT snapshot FROM checkpoints WHERE snapshot IS NOT NULL").fetchone()[0]
    snapshot = json.loads(stored)
    derived = running.derived_nodes()
    assert {name: row["state"] for name, row in snapshot.items()} == {n: f.state for n, f in derived.items()}
    assert snapshot["mgr"]["last_seq"] == record["seq"] == derived["mgr"].last_seq
    for incremental in (True, False):
        report = running.verify(SIGNER, incremental=incremental)
        assert report.status == VerifyStatus.VERIFIED and report.head_signed, report.problems
    long_ways.clear()  # verify() went the long way too
    walk(running, "conf-2", ["reserved"])
    running.checkpoint(SIGNER)  # a run's closing checkpoint: the long way
    assert long_ways == [1]


def _edit_event(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE events SET payload = '{\"forged\": true}' WHERE seq = (SELECT max(seq) FROM events)")


def _edit_touched_row(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE nodes SET step = 'ldap_role_mapping' WHERE name = 'conf-1'")


def _add_row(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO nodes (name, role, state, attempt, maintenance) VALUES ('ghost', 'conferencing', 'x', 0, 0)"
    )


def _edit_an_event_before_the_checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE events SET payload = '{\"forged\": true}' WHERE seq = 2")


def _delete_the_last_event(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM events WHERE seq = (SELECT max(seq) FROM events)")


def _append_an_event_by_hand(conn: sqlite3.Connection) -> None:
    # Linked to the head, with the head record and the node row moved to match: only the head signature is behind.
    seq, last = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    forged = "f" * 64
    conn.execute(
        "INSERT INTO events (seq, at, node, kind, attempt, actor, payload, prev_hash, hash, sets) "
        "VALUES (?, '2026-01-01T00:00:00Z', 'conf-1', 'step_committed', 0, 'mallory', '{}', ?, ?, ?)",
        (seq + 1, last, forged, '{"step":"forged"}'),
    )
    conn.execute(
        "UPDATE nodes SET step = 'forged', last_seq = ?, updated_at = '2026-01-01T00:00:00Z' WHERE name = 'conf-1'",
        (seq + 1,),
    )
    conn.execute("UPDATE meta SET value = ? WHERE name = 'head'", (json.dumps({"seq": seq + 1, "hash": forged}),))


@pytest.mark.parametrize(
    "edit",
    [
        _edit_event,
        _edit_touched_row,
        _add_row,
        _edit_an_event_before_the_checkpoint,
        _delete_the_last_event,
        _append_an_event_by_hand,
    ],
)
def test_a_continued_check_refuses_what_this_connection_changed_outside_the_journal(
    running: Journal, long_ways: list[int], edit: Callable[[sqlite3.Connection], None]
) -> None:
    """The same connection edits (no other writer: the continued check runs): nothing is signed."""
    periodic(running)
    walk(running, "conf-1", ["bios_locked"])
    before = running.checkpoints()
    edit(running._conn)
    with pytest.raises(IntegrityError, match="does not verify"):
        periodic(running)
    assert long_ways == [] and running.checkpoints() == before


def test_another_writer_sends_the_next_checkpoint_the_long_way(
    running: Journal, attacker: sqlite3.Connection, long_ways: list[int]
) -> None:
    """A row no event since touched, edited by another connection: the continued check does not apply."""
    periodic(running)
    walk(running, "conf-1", ["bios_locked"])
    attacker.execute("UPDATE nodes SET step = 'ldap_role_mapping' WHERE name = 'conf-2'")
    with pytest.raises(IntegrityError, match="conf-2"):
        periodic(running)
    assert long_ways == [1]


def test_after_a_refusal_the_next_checkpoint_takes_the_long_way(running: Journal, long_ways: list[int]) -> None:
    periodic(running)
    walk(running, "conf-1", ["bios_locked"])
    running._conn.execute("UPDATE nodes SET step = 'x' WHERE name = 'conf-1'")
    with pytest.raises(IntegrityError):
        periodic(running)
    running._conn.execute("UPDATE nodes SET step = NULL WHERE name = 'conf-1'")  # put back as the events say
    periodic(running)
    assert long_ways == [1]


def test_a_closing_checkpoint_continues_and_checks_the_files_pages(
    running: Journal, long_ways: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With file_check (a run's closing checkpoint), the chain is checked the continued way and SQLite's
    quick_check runs beside it: a damaged page refuses the checkpoint, naming it, and nothing is signed."""
    checks: list[bool] = []
    original = checkpoints_module.integrity_problems

    def quick(conn: sqlite3.Connection, *, full: bool) -> list[str]:
        checks.append(full)
        return original(conn, full=full)

    monkeypatch.setattr(checkpoints_module, "integrity_problems", quick)
    periodic(running)
    walk(running, "mgr", ["installed"])
    running.checkpoint(SIGNER, file_check=True, continued=True)
    assert long_ways == [] and checks == [False]  # continued, and quick_check ran once
    walk(running, "conf-1", ["bios_locked"])
    monkeypatch.setattr(checkpoints_module, "integrity_problems", lambda conn, *, full: ["quick_check: page 7 damaged"])
    before = running.checkpoints()
    with pytest.raises(IntegrityError, match="page 7 damaged"):
        running.checkpoint(SIGNER, file_check=True, continued=True)
    assert running.checkpoints() == before
