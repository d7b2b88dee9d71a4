"""Journal.tallies: what a run's recap counts, read without decoding payloads (issue #11)."""

from __future__ import annotations

from journal import Journal, Transition


def test_tallies_name_each_node_event_after_a_seq_and_whether_it_changed_something(journal: Journal) -> None:
    start = journal.statistics()["last_seq"]
    journal.commit(
        [
            Transition(node="mgr", kind="step_committed", step="a", payload={"changed": [{"field": "x"}]}),
            Transition(node="mgr", kind="step_committed", step="b", payload={"changed": []}),
            Transition(node=None, kind="run_note", payload={"changed": [1]}),  # not a node's: left out
            Transition(node="conf-1", kind="step_retry", step="a", payload={"error": "e"}),
        ]
    )
    rows = list(journal.tallies(start))
    assert [(node, kind, step, changed) for _, node, kind, step, _, changed in rows] == [
        ("mgr", "step_committed", "a", True),
        ("mgr", "step_committed", "b", False),
        ("conf-1", "step_retry", "a", False),
    ]
    assert [seq for seq, *_ in rows] == [start + 1, start + 2, start + 4]
    assert list(journal.tallies(start + 4)) == []


def test_tallies_page_through_many_events(journal: Journal) -> None:
    start = journal.statistics()["last_seq"]
    journal.commit([Transition(node="mgr", kind="note", payload={}) for _ in range(2500)])
    assert len(list(journal.tallies(start))) == 2500
