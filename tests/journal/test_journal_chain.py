"""Tamper evidence: the hash chain, the head record, signed checkpoints and node rows, attacked with plain SQL."""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from journal_helpers import NODES, spec_hash, walk

from config.errors import IntegrityError
from journal import Journal, Signer, Transition, VerifyStatus
from journal._chain import _jsonable, canonical_json, event_hash, row_hash

SIGNER = Signer.generate()
PUBLIC = SIGNER.public_key_pem()

# busy_journal holds seq 1..9: 1-3 node_registered, 4-6 mgr, 7-8 conf-1, 9 a run-level note.


def _append_forged(db: sqlite3.Connection) -> None:
    """Append seq 10 with a correctly computed chain hash, as anyone who reads the spec can."""
    last = db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    event = {
        "seq": last[0] + 1,
        "at": "2030-01-01T00:00:00.000000Z",
        "node": None,
        "kind": "run_note",
        "step": None,
        "attempt": 0,
        "key": None,
        "from_state": None,
        "to_state": None,
        "actor": "mallory",
        "payload": {"text": "all fine"},
        "sets": {},
    }
    digest = spec_hash(last[1], event)
    db.execute(
        "INSERT INTO events (seq, at, node, kind, step, attempt, key, from_state, to_state, actor, "
        "payload, prev_hash, hash, sets) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            *[
                event[k]
                for k in ("seq", "at", "node", "kind", "step", "attempt", "key", "from_state", "to_state", "actor")
            ],
            json.dumps(event["payload"]),
            last[1],
            digest,
            "{}",
        ),
    )


def _swap(db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET seq = -1 WHERE seq = 5")
    db.execute("UPDATE events SET seq = 5 WHERE seq = 6")
    db.execute("UPDATE events SET seq = 6 WHERE seq = -1")


def _edit_seal(db: sqlite3.Connection) -> None:
    seal = json.loads(db.execute("SELECT value FROM meta WHERE name = 'head'").fetchone()[0])
    seal["seq"] = 8
    db.execute("UPDATE meta SET value = ? WHERE name = 'head'", (json.dumps(seal),))


def _reseal_after_truncation(db: sqlite3.Connection) -> None:
    """Cut the tail and point the head record at the new last row: the signed checkpoint at 9 remains."""
    db.execute("DELETE FROM events WHERE seq > 7")
    seal = json.loads(db.execute("SELECT value FROM meta WHERE name = 'head'").fetchone()[0])
    last_hash = db.execute("SELECT hash FROM events WHERE seq = 7").fetchone()[0]
    seal.update(seq=7, hash=last_hash)
    db.execute("UPDATE meta SET value = ? WHERE name = 'head'", (json.dumps(seal),))


def _truncate_reseal_and_drop_checkpoints(db: sqlite3.Connection) -> None:
    """Cut the tail, move the head record and delete the signed checkpoints that would tell."""
    _reseal_after_truncation(db)
    db.execute("DELETE FROM checkpoints")


TAMPERING: list[tuple[str, Callable[[sqlite3.Connection], object], str]] = [
    # edit a payload
    (
        "edit payload",
        lambda db: db.execute('UPDATE events SET payload = \'{"observed":{"state":"forged"}}\' WHERE seq = 5'),
        "event seq 5: content does not match its hash",
    ),
    # edit an event's to_state
    (
        "edit event state",
        lambda db: db.execute("UPDATE events SET to_state = 'certified' WHERE seq = 8"),
        "event seq 8: content does not match its hash",
    ),
    # edit a node's state
    (
        "edit node state",
        lambda db: db.execute("UPDATE nodes SET state = 'certified' WHERE name = 'conf-1'"),
        "node conf-1: state 'certified' disagrees with to_state 'bios_locked' of its latest event seq 8",
    ),
    # delete a middle row
    (
        "delete middle row",
        lambda db: db.execute("DELETE FROM events WHERE seq = 5"),
        "event seq 6: seq 5 missing before it",
    ),
    # swap two rows' seq
    ("swap two rows", _swap, "event seq 5: content does not match its hash"),
    # cut the tail
    (
        "truncate tail",
        lambda db: db.execute("DELETE FROM events WHERE seq > 7"),
        "events 8..9 were deleted (truncated)",
    ),
    # cut the tail and move the seal's seq/hash by hand
    (
        "truncate and reseal",
        _reseal_after_truncation,
        "checkpoint #1 (seq 9): the chain ends at seq 7; events 8..9 were deleted (truncated)",
    ),
    # cut the tail, move the head and drop the signed checkpoint: the verdict is no longer VERIFIED
    (
        "truncate, reseal, drop checkpoint",
        _truncate_reseal_and_drop_checkpoints,
        "node conf-1: last_seq 8 but its latest event is seq 7",
    ),
    # append a row with a correctly computed sha256 chain hash
    ("append forged row", _append_forged, "event 10 was appended outside the journal"),
    # edit the seal
    ("edit seal", _edit_seal, "seal: sealed at seq 8 but events run to seq 9"),
    # edit the signed checkpoint's head
    (
        "edit checkpoint",
        lambda db: db.execute("UPDATE checkpoints SET head = ?", ("a" * 64,)),
        "checkpoint #1 (seq 9): signature does not match the trusted public key",
    ),
    # delete the seal
    ("delete seal", lambda db: db.execute("DELETE FROM meta WHERE name = 'head'"), "seal: missing"),
    # delete a node row
    (
        "delete node row",
        lambda db: db.execute("DELETE FROM nodes WHERE name = 'conf-1'"),
        "node conf-1: has events up to seq 8 but no row",
    ),
    # insert a node row by hand
    (
        "insert node row",
        lambda db: db.execute(
            "INSERT INTO nodes (name, role, state, attempt, maintenance) VALUES ('evil', 'management', 'certified', "
            "0, 0)"
        ),
        "node evil: has no events",
    ),
]


@pytest.mark.parametrize(
    ("attack", "expected"), [(a, e) for _, a, e in TAMPERING], ids=[name for name, _, _ in TAMPERING]
)
def test_verify_catches_tampering(
    busy_journal: Journal, attacker: sqlite3.Connection, attack: Callable[[sqlite3.Connection], object], expected: str
) -> None:
    """Each edit made with the sqlite3 module is reported, naming the seq or node; never VERIFIED."""
    busy_journal.checkpoint(SIGNER)
    assert busy_journal.verify(public_key=PUBLIC).verified
    attack(attacker)
    report = busy_journal.verify(public_key=PUBLIC)
    assert report.status != VerifyStatus.VERIFIED
    assert any(expected in problem for problem in report.problems), report.problems


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("at", "2020-01-01T00:00:00.000000Z"),  # timestamp
        ("node", "conf-2"),  # which node
        ("kind", "step_failed"),  # what happened
        ("step", "other_step"),  # which step
        ("attempt", 7),  # attempt number
        ("key", "other-key"),  # idempotency key
        ("from_state", "certified"),  # where from
        ("to_state", "certified"),  # where to
        ("actor", "mallory"),  # who
        ("payload", '{"observed":{}}'),  # details
        ("prev_hash", "1" * 64),  # the link
        ("hash", "2" * 64),  # the hash itself
        ("sets", '{"step":"forged"}'),  # the node columns it set
    ],
)
def test_every_event_column_is_covered(
    busy_journal: Journal, attacker: sqlite3.Connection, column: str, value: object
) -> None:
    """Editing any column of an event breaks the chain at that seq."""
    attacker.execute(f"UPDATE events SET {column} = ? WHERE seq = 7", (value,))
    report = busy_journal.verify()
    assert not report.ok
    assert any("seq 7" in p for p in report.problems), report.problems


def test_untouched_journal_verifies(busy_journal: Journal) -> None:
    """An untouched, checkpointed journal is VERIFIED against the trusted public key."""
    busy_journal.checkpoint(SIGNER)
    report = busy_journal.verify(public_key=PUBLIC)
    assert (report.ok, report.problems, report.events, report.sealed) == (True, [], 9, True)
    assert (report.status, report.signed_seq) == (VerifyStatus.VERIFIED, 9)
    report.raise_for_problems()


def test_report_raises_integrity_error(busy_journal: Journal, attacker: sqlite3.Connection) -> None:
    """raise_for_problems turns a failed report into IntegrityError with the problems."""
    attacker.execute("DELETE FROM events WHERE seq = 5")
    with pytest.raises(IntegrityError, match="seq 5 missing"):
        busy_journal.verify().raise_for_problems()


@pytest.mark.parametrize(
    "attack",
    [
        _append_forged,  # a row appended by hand
        lambda db: db.execute("DELETE FROM events WHERE seq > 7"),  # the tail cut
        _edit_seal,  # the seal edited
    ],
)
def test_writes_refuse_to_seal_a_tampered_head(
    busy_journal: Journal, attacker: sqlite3.Connection, attack: Callable[[sqlite3.Connection], object]
) -> None:
    """A commit on top of a head that does not match the seal is refused, so it cannot launder it."""
    attack(attacker)
    before = attacker.execute("SELECT count(*) FROM events").fetchone()[0]
    with pytest.raises(IntegrityError, match="does not match its seal"):
        busy_journal.record(node="mgr", kind="step_committed", to_state="hardened")
    assert attacker.execute("SELECT count(*) FROM events").fetchone()[0] == before
    assert not busy_journal.verify().ok


def test_without_a_public_key_the_chain_is_checked_but_unverified(busy_journal: Journal) -> None:
    """Without a trusted key the chain is still checked, and the verdict is UNVERIFIED, never a pass."""
    busy_journal.checkpoint(SIGNER)
    report = busy_journal.verify()
    assert report.ok and report.sealed is None and report.events == 9
    assert report.status == VerifyStatus.UNVERIFIED and not report.verified
    assert report.problems[-1].startswith("warning: UNVERIFIED")
    busy_journal._conn.execute("UPDATE events SET actor = 'mallory' WHERE seq = 4")
    broken = busy_journal.verify()
    assert not broken.ok and broken.status == VerifyStatus.FAILED


def test_chain_only_says_so(busy_journal: Journal) -> None:
    """The explicit chain-only mode reports the chain alone and says the signatures were not checked."""
    report = busy_journal.verify(chain_only=True)
    assert report.ok and report.status == VerifyStatus.CHAIN_ONLY
    assert any("chain only" in p for p in report.problems)


def test_other_public_key_does_not_verify(busy_journal: Journal) -> None:
    """A journal checked with another public key reports its checkpoints as not matching."""
    busy_journal.checkpoint(SIGNER)
    report = busy_journal.verify(public_key=Signer.generate().public_key_pem())
    assert not report.ok and report.sealed is False and report.status == VerifyStatus.FAILED


def test_two_journals_on_one_file_keep_one_chain(busy_journal: Journal, journal_path: Path) -> None:
    """A second connection's commits are seen (data_version) and the chain stays whole."""
    with Journal.open(journal_path) as other:
        for i in range(5):
            busy_journal.record(node="mgr", kind="tick", attempt=i)
            other.record(node="conf-2", kind="approve", actor="operator", attempt=i)
        other.ensure_nodes([("conf-9", "conferencing", "deployed")])
    busy_journal.record(node="conf-9", kind="tick")
    report = busy_journal.verify()
    assert report.ok, report.problems
    assert [e.seq for e in busy_journal.events()] == list(range(1, 22))


def test_fast_hash_equals_canonical_json() -> None:
    """The hand-assembled hash input equals canonical_json of the content dict."""
    import hashlib

    cases = [
        (1, "2024-01-01T00:00:00.000000Z", None, "k", None, 0, None, None, None, "a", {}),
        (99, "t", 'n\u2028é"', "k\\", "s\n", 12, "key\x00", "f", "t", "actor", {"z": [1, 2.5, None, True]}),
    ]
    sets = {"step": None, "attempt": 2, "gate": "g\u2028"}
    for seq, at, node, kind, step, attempt, key, fs, ts, actor, payload in cases:
        expected = hashlib.sha256(
            (
                "p"
                + canonical_json(
                    {
                        "seq": seq,
                        "at": at,
                        "node": node,
                        "kind": kind,
                        "step": step,
                        "attempt": attempt,
                        "key": key,
                        "from_state": fs,
                        "to_state": ts,
                        "actor": actor,
                        "payload": payload,
                        "sets": sets,
                    }
                )
            ).encode()
        ).hexdigest()
        got = event_hash(
            "p", seq, at, node, kind, step, attempt, key, fs, ts, actor, canonical_json(payload), canonical_json(sets)
        )
        assert got == expected
        assert row_hash([seq, at, node, kind, step, attempt, key, fs, ts, actor, payload, "p", got, sets]) == expected


def test_many_problems_are_capped(journal: Journal, attacker: sqlite3.Connection) -> None:
    """A journal edited everywhere gives a readable report, not thousands of lines."""
    walk(journal, "mgr", [f"s{i}" for i in range(120)])
    attacker.execute("UPDATE events SET actor = 'mallory'")
    report = journal.verify()
    assert not report.ok
    assert len(report.problems) <= 52
    assert report.problems[-1].startswith("... and ")


def test_transition_list_commit_after_reopen(journal_path: Path) -> None:
    """A reopened journal continues the chain where it stopped."""
    with Journal.open(journal_path) as j:
        j.ensure_nodes(NODES)
    with Journal.open(journal_path) as j:
        events = j.commit([Transition(node="mgr", kind="a"), Transition(node="conf-1", kind="b")])
        assert [e.seq for e in events] == [4, 5]
        assert j.verify().ok


def test_a_deriver_from_a_snapshot_never_changes_the_snapshot() -> None:
    """from_snapshot borrows the rows and copies one at its first event (issue #11): the snapshot a checkpoint
    keeps stays as it was, the deriver's rows move, and the untouched rows are the same values."""
    import copy

    from journal._derive import Deriver

    snapshot = {
        name: {"role": "conferencing", "state": "reserved", "step": None, "attempt": 0, "gate": None,
               "last_error": None, "failed_from": None, "maintenance": 0, "maintenance_reason": None,
               "updated_at": "t0", "last_seq": i}
        for i, name in enumerate(["a", "b", "c"], start=1)
    }  # fmt: skip
    before = copy.deepcopy(snapshot)
    deriver = Deriver.from_snapshot(snapshot)
    deriver.feed(4, "t1", "b", "step_committed", "reserved", "installed", None, {"state": "installed"})
    deriver.feed(5, "t2", "b", "step_committed", "installed", "hardened", None, {"state": "hardened"})
    assert snapshot == before
    assert deriver.rows["b"]["state"] == "hardened" and deriver.rows["b"]["last_seq"] == 5
    assert deriver.rows["a"] == before["a"] and deriver.touched == {"b"} and not deriver.problems


class _Red(enum.StrEnum):
    RED = "red"


class _Blue(enum.Enum):
    BLUE = "blue"


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [True, False, None], "c": {"z": 1.5, "y": 'ünïcode \u2603 "quoted" \\ \n'}},  # sorted, escaped
        {"changed": []},  # a step that changed nothing
        [1, 2.25, -0.0, 10**30, "x"],  # numbers as json writes them
        {3: "three", 10: "ten"},  # non-str keys as json converts them
        {"colour": _Red.RED, "enum": _Blue.BLUE, "set": {"b", "a"}, "bytes": b"\x01"},  # the converted types
        "a bare string",  # a str alone
        7,  # an int alone
        None,  # null alone
    ],
)
def test_canonical_json_is_what_json_dumps_writes_with_the_same_options(value: Any) -> None:
    """canonical_json (one C encoder made once) writes exactly what json.dumps with its options writes."""
    options: dict[str, Any] = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False}
    assert canonical_json(value) == json.dumps(value, allow_nan=False, default=_jsonable, **options)


def test_canonical_json_refuses_what_it_always_refused() -> None:
    """A cycle, a NaN and a value that is not JSON data raise the errors json.dumps raises, naming the problem."""
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference detected"):
        canonical_json({"a": cycle})
    with pytest.raises(ValueError, match="Out of range float"):
        canonical_json({"n": float("nan")})
    with pytest.raises(TypeError, match="journal payloads must be JSON data; a object"):
        canonical_json({"o": object()})
