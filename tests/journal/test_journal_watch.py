"""Journal.latest_kind: the newest of some kinds per node, read only when another connection wrote (issue #11)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from journal import Journal

KINDS = ("maintenance_on", "maintenance_off")


def test_own_and_other_connections_writes_are_seen_at_once(journal: Journal, journal_path: Path) -> None:
    assert journal.latest_kind("conf-1", KINDS) is None
    journal.record(node="conf-1", kind="maintenance_on")
    assert journal.latest_kind("conf-1", KINDS) == "maintenance_on"
    with Journal.open(journal_path) as other:  # as `orchestrator maintenance` in another process
        other.record(node="conf-1", kind="maintenance_off")
        assert journal.latest_kind("conf-1", KINDS) == "maintenance_off"
        other.record(node="conf-2", kind="maintenance_on")
    journal.record(node="conf-1", kind="step_started", step="x")  # another kind does not count
    assert journal.latest_kind("conf-1", KINDS) == "maintenance_off"
    assert journal.latest_kind("conf-2", KINDS) == "maintenance_on"
    assert journal.latest_kind("mgr", KINDS) is None


def _statements(journal: Journal, ask: Callable[[], object]) -> list[str]:
    """The SQL statements the journal's connection ran while ``ask`` ran."""
    seen: list[str] = []
    journal._conn.set_trace_callback(seen.append)
    try:
        ask()
    finally:
        journal._conn.set_trace_callback(None)
    return seen


def test_while_nobody_else_wrote_an_answer_reads_nothing(journal: Journal, journal_path: Path) -> None:
    """This connection's own commits of other kinds cost no read; another connection's commit is read once."""
    journal.record(node="mgr", kind="maintenance_on")
    assert journal.latest_kind("mgr", KINDS) == "maintenance_on"
    journal.record(node="mgr", kind="step_started", step="x")
    journal.record(node="conf-1", kind="step_started", step="x")
    asked = _statements(journal, lambda: [journal.latest_kind(n, KINDS) for n in ("mgr", "conf-1", "conf-2")])
    assert asked == ["PRAGMA data_version"] * 3
    with Journal.open(journal_path) as other:
        other.record(node="conf-2", kind="maintenance_on")
    asked = _statements(journal, lambda: [journal.latest_kind(n, KINDS) for n in ("conf-2", "mgr")])
    assert len(asked) == 3 and asked[1].startswith("SELECT") and asked[2] == "PRAGMA data_version"
    assert journal.latest_kind("conf-2", KINDS) == "maintenance_on"


def test_an_own_event_that_rolled_back_is_not_an_answer(journal: Journal) -> None:
    """An own maintenance event read inside a transaction that rolls back: the next question reads again."""
    journal.record(node="mgr", kind="maintenance_off")
    with pytest.raises(RuntimeError, match="rolled back"):
        with journal.batch():
            journal.record(node="mgr", kind="maintenance_on")
            assert journal.latest_kind("mgr", KINDS) == "maintenance_on"  # this transaction's own view
            raise RuntimeError("rolled back")
    assert journal.latest_kind("mgr", KINDS) == "maintenance_off"


def test_in_memory_journals_answer_by_query() -> None:
    with Journal.open(":memory:") as journal:
        journal.ensure_nodes([("mgr", "management", "deployed")])
        journal.record(node="mgr", kind="maintenance_on")
        journal.record(node="mgr", kind="maintenance_off")
        assert journal.latest_kind("mgr", KINDS) == "maintenance_off"


def test_an_answer_up_to_max_age_old_misses_only_other_connections_commits_of_that_age(
    journal: Journal, journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``max_age_s``, one PRAGMA answers for that long: another connection's newer commit is seen once the
    PRAGMA is that old, this connection's own append of a watched kind at the next question."""
    now = [100.0]
    monkeypatch.setattr("journal._watch.monotonic", lambda: now[0])
    assert journal.latest_kind("conf-1", KINDS, max_age_s=0.5) is None
    with Journal.open(journal_path) as other:
        other.record(node="conf-1", kind="maintenance_on")
    now[0] += 0.4
    asked = _statements(journal, lambda: journal.latest_kind("conf-1", KINDS, max_age_s=0.5))
    assert asked == []  # answered from the PRAGMA of 0.4 s ago: the mark of 0.3 s ago is not seen yet
    now[0] += 0.1
    assert journal.latest_kind("conf-1", KINDS, max_age_s=0.5) == "maintenance_on"  # 0.5 s old: asked again
    journal.record(node="conf-1", kind="maintenance_off")  # this connection's own: no age at all
    assert journal.latest_kind("conf-1", KINDS, max_age_s=0.5) == "maintenance_off"


def test_an_exact_question_refreshes_the_answer_of_later_aged_ones(journal: Journal, journal_path: Path) -> None:
    """A question without ``max_age_s`` always asks SQLite, and the aged questions after it use what it saw."""
    assert journal.latest_kind("conf-1", KINDS, max_age_s=60) is None
    with Journal.open(journal_path) as other:
        other.record(node="conf-1", kind="maintenance_on")
    assert journal.latest_kind("conf-1", KINDS, max_age_s=60) is None  # within the minute: not asked
    assert journal.latest_kind("conf-1", KINDS) == "maintenance_on"
    assert journal.latest_kind("conf-1", KINDS, max_age_s=60) == "maintenance_on"
