"""Journal.latest_kind: the newest of some kinds per node, from a read connection of its own (issue #11)."""

from __future__ import annotations

import threading
from pathlib import Path

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


def test_it_answers_while_the_journals_connection_is_held(journal: Journal) -> None:
    """The group commit's thread holds the journal's lock through a COMMIT: the watch does not wait for it."""
    journal.record(node="mgr", kind="maintenance_on")
    answers: list[str | None] = []
    with journal._lock:  # the writer's lock, held as during a commit's fsync
        reader = threading.Thread(target=lambda: answers.append(journal.latest_kind("mgr", KINDS)))
        reader.start()
        reader.join(5)
    assert answers == ["maintenance_on"]


def test_in_memory_journals_answer_by_query() -> None:
    with Journal.open(":memory:") as journal:
        journal.ensure_nodes([("mgr", "management", "deployed")])
        journal.record(node="mgr", kind="maintenance_on")
        journal.record(node="mgr", kind="maintenance_off")
        assert journal.latest_kind("mgr", KINDS) == "maintenance_off"
