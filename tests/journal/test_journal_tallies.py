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


def test_tallies_of_some_kinds_and_each_nodes_span(journal: Journal) -> None:
    """Only the kinds asked for; and each node's first and last event's time after a seq, in seq order."""
    start = journal.statistics()["last_seq"]
    journal.commit([Transition(node="mgr", kind="step_started", step="a", payload={})])
    journal.commit(
        [
            Transition(node="mgr", kind="step_committed", step="a", payload={"changed": [{"field": "x"}]}),
            Transition(node="conf-1", kind="step_retry", step="a", payload={"error": "e"}),
        ]
    )
    journal.commit([Transition(node="mgr", kind="milestone_started", step="b", payload={})])
    rows = list(journal.tallies(start, ("step_committed", "step_retry")))
    assert [(node, kind) for _, node, kind, *_ in rows] == [("mgr", "step_committed"), ("conf-1", "step_retry")]
    ats = {e.seq: e.at for e in journal.events() if e.seq > start}
    assert journal.spans(start) == {"mgr": (ats[start + 1], ats[start + 4]), "conf-1": (ats[start + 3], ats[start + 3])}
    assert journal.spans(start + 4) == {}
    assert journal.node_states() == {r.name: r.state for r in journal.nodes()}
