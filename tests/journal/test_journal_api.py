"""The journal's public API: opening, nodes, commits, reads, meta, statistics."""

from __future__ import annotations

import ast
import datetime as dt
import enum
import stat
from pathlib import Path

import pytest
from journal_helpers import NODES, ROOT, spec_hash

import journal as journal_pkg
from config.errors import JournalError
from journal import Event, Journal, NodeRecord, Transition


def test_public_names_are_pinned() -> None:
    """The package exports exactly the names the engine is written against."""
    assert journal_pkg.__all__ == [
        "Journal",
        "Event",
        "NodeRecord",
        "NodeRecordFields",
        "Transition",
        "VerifyReport",
        "VerifyStatus",
        "Signer",
        "derive_nodes",
        "generate_signing_key",
        "load_public_key",
        "public_key_pem",
        "verify_export",
        "new_lease_owner",
        "kinds",
        "COMMIT_LATENCY",
    ]


def test_commit_latency_counts_each_durable_commit_in_fixed_buckets(tmp_path: Path) -> None:
    """Each commit adds one observation; a refused commit (nothing written) adds none."""
    from journal._latency import BUCKETS, CommitLatency

    before = journal_pkg.COMMIT_LATENCY.snapshot()[2]
    with Journal.open(tmp_path / "j.sqlite") as j:
        j.ensure_nodes([("mgr", "management", "new")])
        j.record(node="mgr", kind="step_started", step="deploy_ova", from_state="new", to_state="new")
        with pytest.raises(JournalError):
            j.record(node="nobody", kind="step_started", step="deploy_ova", from_state="new", to_state="new")
    assert journal_pkg.COMMIT_LATENCY.snapshot()[2] == before + 1
    latency = CommitLatency()
    for seconds in (0.0001, 0.003, 0.003, 99.0):
        latency.observe(seconds)
    cumulative, total, count = latency.snapshot()
    assert count == 4 and total == pytest.approx(99.0061)
    assert cumulative[0] == (BUCKETS[0], 1) and (0.005, 3) in cumulative and cumulative[-2] == (BUCKETS[-1], 3)
    assert cumulative[-1] == (float("inf"), 4)


def test_journal_imports_only_config_and_itself() -> None:
    """journal/ stands apart from machines/, adapters/ and orchestrator/ (one-way layers)."""
    ours = {"journal", "config", "machines", "adapters", "orchestrator", "lab"}
    for source in (ROOT / "journal").glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in ours or top in {"journal", "config"}, f"{source.name} imports {name}"


def test_open_creates_a_private_journal_and_no_key(journal_path: Path) -> None:
    """A new journal is 0600 in WAL mode with synchronous=FULL, and no key file beside it."""
    with Journal.open(journal_path) as j:
        assert j.path == journal_path
        assert j.checkpoints_path == Path(f"{journal_path}.checkpoints")
        mode = j._conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = j._conn.execute("PRAGMA synchronous").fetchone()[0]
        j.ensure_nodes(NODES)
        wal = Path(f"{journal_path}-wal")
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    assert mode == "wal"
    assert sync == 2  # FULL
    assert stat.S_IMODE(journal_path.stat().st_mode) == 0o600
    assert not Path(f"{journal_path}.key").exists()


def test_reopen_keeps_data(journal_path: Path) -> None:
    """Reopening finds the same events, and the chain still holds."""
    with Journal.open(journal_path) as j:
        j.ensure_nodes(NODES)
    with Journal.open(journal_path) as j:
        assert [n.name for n in j.nodes()] == ["mgr", "conf-1", "conf-2"]
        assert j.verify().ok


def test_memory_journal() -> None:
    """':memory:' gives a private journal that checkpoints and verifies like a file."""
    from journal import Signer, VerifyStatus

    signer = Signer.generate()
    with Journal.open(":memory:") as j:
        j.ensure_nodes(NODES)
        j.record(node="mgr", kind="step_committed", to_state="reserved")
        j.checkpoint(signer)
        report = j.verify(public_key=signer.public_key_pem())
    assert report.ok and report.sealed is True and report.events == 4
    assert report.status == VerifyStatus.VERIFIED and report.signed_seq == 4


def test_ensure_nodes_adds_only_missing(journal: Journal) -> None:
    """ensure_nodes registers new names once, each with a node_registered event."""
    added = journal.ensure_nodes([("conf-2", "conferencing", "deployed"), ("conf-3", "conferencing", "deployed")])
    assert added == ["conf-3"]
    assert journal.ensure_nodes([("conf-3", "conferencing", "deployed")]) == []
    assert [n.name for n in journal.nodes()] == ["mgr", "conf-1", "conf-2", "conf-3"]
    registered = list(journal.events(kinds=["node_registered"]))
    assert [(e.node, e.to_state, e.payload) for e in registered][-1] == ("conf-3", "deployed", {"role": "conferencing"})
    assert journal.node("conf-3") == NodeRecord(
        name="conf-3",
        role="conferencing",
        state="deployed",
        step=None,
        attempt=0,
        gate=None,
        last_error=None,
        failed_from=None,
        maintenance=False,
        maintenance_reason=None,
        lease_owner=None,
        lease_pid=None,
        lease_since=None,
        heartbeat=None,
        updated_at=registered[-1].at,
        last_seq=registered[-1].seq,
    )


def test_commit_updates_events_and_node_rows(journal: Journal) -> None:
    """One commit appends its events and applies each node update, in order."""
    events = journal.commit(
        [
            Transition(
                node="mgr",
                kind="step_started",
                step="reserve_resources",
                attempt=1,
                key="mgr/reserve/1",
                update={"step": "reserve_resources", "attempt": 1},
            ),
            Transition(node="conf-1", kind="gate_waiting", update={"gate": "operator_approval"}),
            Transition(
                node="mgr",
                kind="step_committed",
                step="reserve_resources",
                attempt=1,
                from_state="deployed",
                to_state="reserved",
                update={"step": None, "attempt": 0},
            ),
        ]
    )
    assert [e.seq for e in events] == [4, 5, 6]
    assert events[1].prev_hash == events[0].hash and events[2].prev_hash == events[1].hash
    mgr, conf1 = journal.node("mgr"), journal.node("conf-1")
    assert mgr is not None and conf1 is not None
    assert (mgr.state, mgr.step, mgr.attempt, mgr.last_seq) == ("reserved", None, 0, 6)
    assert (conf1.state, conf1.gate, conf1.last_seq) == ("deployed", "operator_approval", 5)
    assert list(journal.events(node="mgr"))[-2:] == events[::2]


_MOVES = [  # one node's events of one commit, then another node's
    Transition(
        node="mgr",
        kind="step_committed",
        step="a",
        from_state="deployed",
        to_state="reserved",
        update={"step": None, "attempt": 0, "last_error": "was slow"},
    ),
    Transition(node="mgr", kind="gate_waiting", update={"gate": "operator_approval", "maintenance": True}),
    Transition(node="conf-1", kind="step_started", step="b", attempt=2, update={"step": "b", "attempt": 2}),
    Transition(
        node="mgr", kind="step_started", step="c", attempt=1, update={"step": "c", "attempt": 1, "last_error": None}
    ),
    Transition(node=None, kind="run_note"),
]


@pytest.mark.parametrize("count", [2, 3, 4, 5])
def test_a_commit_leaves_every_node_row_as_its_events_one_by_one_do(journal_path: Path, count: int) -> None:
    """Several events of one node in one commit (their columns merged into one update) leave the row, last_seq
    included, that committing them one at a time leaves; the rows verify against the events."""
    rows = {}
    for name, commits in (("together", [_MOVES[:count]]), ("one_by_one", [[t] for t in _MOVES[:count]])):
        with Journal.open(journal_path.with_name(f"{name}.sqlite")) as j:
            j.ensure_nodes(NODES)
            for transitions in commits:
                j.commit(transitions)
            rows[name] = [record.__dict__ | {"updated_at": None} for record in j.nodes()]
            assert j.verify(chain_only=True).ok
    assert rows["together"] == rows["one_by_one"]


def test_record_is_commit_of_one(journal: Journal) -> None:
    """record() takes Transition's fields and returns the stored event."""
    event = journal.record(
        node="mgr",
        kind="maintenance_on",
        actor="alice",
        update={"maintenance": True, "maintenance_reason": "disk swap"},
    )
    assert isinstance(event, Event) and event.actor == "alice" and event.seq == 4
    node = journal.node("mgr")
    assert node is not None and node.maintenance is True and node.maintenance_reason == "disk swap"
    assert journal.last_event("mgr") == event


def test_update_state_without_to_state_is_journaled(journal: Journal) -> None:
    """Setting state through update records it as the event's to_state, so verify holds."""
    event = journal.record(
        node="conf-1", kind="failed", update={"state": "failed", "failed_from": "deployed", "last_error": "boom"}
    )
    assert event.to_state == "failed"
    assert journal.verify().ok


@pytest.mark.parametrize(
    ("transition", "error", "text"),
    [
        # update of a column that belongs to the journal
        (Transition(node="mgr", kind="x", update={"lease_owner": "me"}), ValueError, "cannot update"),
        # update on a run-level event
        (Transition(node=None, kind="x", update={"gate": "g"}), ValueError, "needs a node"),
        # empty kind
        (Transition(node="mgr", kind=""), ValueError, "kind"),
        # update state contradicting to_state
        (Transition(node="mgr", kind="x", to_state="a", update={"state": "b"}), ValueError, "contradicts"),
        # a payload that is not JSON data
        (Transition(node="mgr", kind="x", payload={"obj": object()}), TypeError, "JSON"),
        # a non-string step
        (Transition(node="mgr", kind="x", step=5), TypeError, "step"),  # type: ignore[arg-type]
        # unknown node: found by the write itself
        (Transition(node="ghost", kind="x"), JournalError, "ghost"),
    ],
)
def test_malformed_transitions_are_refused(journal: Journal, transition: Transition, error: type, text: str) -> None:
    """A malformed transition raises a named error and writes nothing."""
    with pytest.raises(error, match=text):
        journal.commit([transition])
    assert journal.statistics()["events"] == 3


class Color(enum.Enum):
    RED = "red"


def test_payload_is_canonical_json(journal: Journal) -> None:
    """Payloads store as canonical JSON; dates, enums, paths and tuples become JSON data."""
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    event = journal.record(
        node="mgr", kind="x", payload={"b": (1, 2), "a": when, "c": Color.RED, "d": Path("/x"), "e": 'é\u2028"\\\n'}
    )
    assert event.payload == {"a": when.isoformat(), "b": [1, 2], "c": "red", "d": "/x", "e": 'é\u2028"\\\n'}
    stored = journal._conn.execute("SELECT payload FROM events WHERE seq = ?", (event.seq,)).fetchone()[0]
    assert stored.startswith('{"a":"2024-05-01T12:00:00+00:00","b":[1,2]')
    assert journal.last_event("mgr") == event


def test_hash_follows_the_written_formula(busy_journal: Journal) -> None:
    """Every stored hash equals sha256(prev_hash + canonical JSON) computed from the spec."""
    busy_journal.record(node="mgr", kind="odd", step="é", payload={"t": '\u2028 "q" \\ \x01', "n": [1.5, None]})
    prev = "0" * 64
    for event in busy_journal.events():
        assert event.prev_hash == prev
        assert event.hash == spec_hash(prev, event.as_dict())
        prev = event.hash


def test_empty_strings_are_stored_as_null(journal: Journal) -> None:
    """'' in a nullable column becomes NULL, so a CSV empty cell means exactly None."""
    event = journal.record(node="mgr", kind="x", step="", key="", from_state="")
    assert (event.step, event.key, event.from_state) == (None, None, None)


def test_event_filters(busy_journal: Journal) -> None:
    """events() filters by node, kinds and since; last_event by node and kind."""
    assert [e.seq for e in busy_journal.events(node="conf-1")] == [2, 7, 8]
    assert [e.seq for e in busy_journal.events(kinds=["run_note", "node_registered"])] == [1, 2, 3, 9]
    assert [e.seq for e in busy_journal.events(kinds="run_note")] == [9]
    seventh = next(e for e in busy_journal.events() if e.seq == 7)
    since = [e.seq for e in busy_journal.events(since=seventh.at)]
    assert since == [7, 8, 9]
    as_datetime = dt.datetime.fromisoformat(seventh.at.replace("Z", "+00:00"))
    assert [e.seq for e in busy_journal.events(since=as_datetime)] == since
    last = busy_journal.last_event("mgr", kind="node_registered")
    assert last is not None and last.seq == 1
    run_level = busy_journal.last_event(None)
    assert run_level is not None and run_level.seq == 9
    assert busy_journal.last_event("conf-2", kind="step_committed") is None


def test_last_event_sees_a_new_event_from_this_or_another_connection(journal: Journal, journal_path: Path) -> None:
    """A "no such event" answer is remembered only until this connection or another one writes that event."""
    assert journal.last_event("conf-1", kind="maintenance_on") is None
    assert journal.last_event("conf-1", kind="maintenance_on") is None  # remembered
    journal.record(node="conf-1", kind="maintenance_on")
    mine = journal.last_event("conf-1", kind="maintenance_on")
    assert mine is not None and mine.kind == "maintenance_on"
    assert journal.last_event("conf-2", kind="maintenance_off") is None
    with Journal.open(journal_path) as other:  # as `orchestrator maintenance` in another process
        other.record(node="conf-2", kind="maintenance_off")
    theirs = journal.last_event("conf-2", kind="maintenance_off")
    assert theirs is not None and theirs.seq == mine.seq + 1


def test_events_can_be_read_while_committing(journal: Journal) -> None:
    """Iterating events (many pages) while committing neither blocks nor fails."""
    journal.commit([Transition(node="mgr", kind="tick", attempt=i) for i in range(2500)])
    seen = 0
    for _event in journal.events(kinds=["tick"]):
        if seen % 1000 == 0:
            journal.record(node="conf-1", kind="during_read")
        seen += 1
    assert seen == 2500
    assert journal.verify().ok


def test_bad_since_is_named(journal: Journal) -> None:
    """A since that is not ISO-8601 says what it got and what to give."""
    with pytest.raises(ValueError, match="yesterday"):
        list(journal.events(since="yesterday"))


def test_meta(journal: Journal) -> None:
    """Meta values round-trip; the head, deployment and schema version cannot be set by hand."""
    assert journal.get_meta("definition_hash") is None
    journal.set_meta("definition_hash", "abc")
    journal.set_meta("definition_hash", "def")
    assert journal.get_meta("definition_hash") == "def"
    for name in ("head", "deployment", "schema_version"):
        with pytest.raises(ValueError, match="kept by the journal itself"):
            journal.set_meta(name, "{}")


def test_statistics(busy_journal: Journal) -> None:
    """statistics() counts events, nodes per state and the file size."""
    stats = busy_journal.statistics()
    assert stats["events"] == 9 and stats["last_seq"] == 9 and stats["nodes"] == 3
    assert stats["nodes_by_state"] == {"bios_locked": 1, "deployed": 1, "installed": 1}
    assert stats["file_bytes"] > 0


def test_not_a_journal(tmp_path: Path) -> None:
    """A file that is not SQLite gives a JournalError naming it."""
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not a database " * 100)
    with pytest.raises(JournalError, match="notes.txt"):
        Journal.open(bad)
