"""Issue #7, the signed head (journal/_head.py): every commit that appends events signs the new head, in the same
transaction, so events after the last checkpoint are proven too, and a tail appended without the key is caught."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from journal_helpers import NODES, append_forged_approval, walk

from config.errors import IntegrityError, JournalError
from journal import Journal, Signer, Transition, VerifyStatus
from orchestrator._trust import Trust, verify_before_acting

SIGNER = Signer.generate()
PUBLIC = SIGNER.public_key_pem()


def _signature(path: Path) -> dict[str, object] | None:
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT value FROM meta WHERE name = 'head_signature'").fetchone()
    return json.loads(row[0]) if row else None


@pytest.fixture
def heads(journal_path: Path) -> Journal:
    """A journal that signs its heads from its first event: bound, three nodes, mgr moved twice (seq 1..6)."""
    j = Journal.open(journal_path)
    j.sign_heads(SIGNER)
    j.bind_deployment("acme")
    j.ensure_nodes(NODES)
    walk(j, "mgr", ["reserved", "bios_locked"])
    return j


def _append_forged_approval(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return append_forged_approval(db, "mgr")


def test_every_commit_signs_its_head_so_no_checkpoint_is_needed_to_verify(heads: Journal) -> None:
    signed = _signature(heads.path)
    assert signed is not None and (signed["seq"], signed["deployment"], signed["checkpoint"]) == (6, "acme", 0)
    assert signed["head"] == json.loads(heads.get_meta("head") or "{}")["hash"]
    heads.record(node="mgr", kind="step_committed", step="work", from_state="bios_locked", to_state="installed")
    assert _signature(heads.path)["seq"] == 7  # type: ignore[index]
    report = heads.verify(public_key=PUBLIC)
    assert (report.status, report.signed_seq, report.head_seq) == (VerifyStatus.VERIFIED, 7, 7)
    assert report.head_signed is True
    assert report.problems == []
    heads.close()


def test_a_failed_commit_leaves_the_previous_head_signature_whole(heads: Journal) -> None:
    """The signature is written in the events' transaction: a commit that fails writes neither."""
    before = _signature(heads.path)
    with pytest.raises(JournalError, match="not in the journal"):
        heads.commit([Transition(node="mgr", kind="note"), Transition(node="nobody", kind="note")])
    assert _signature(heads.path) == before
    assert heads.verify(public_key=PUBLIC).head_signed is True
    heads.close()


def test_an_event_appended_without_the_key_fails_verify_and_is_never_checkpointed(heads: Journal) -> None:
    forged = _append_forged_approval(heads.path)
    report = heads.verify(public_key=PUBLIC)
    assert report.status == VerifyStatus.FAILED and report.head_signed is False
    assert any(f"signs head seq {forged - 1}" in p for p in report.problems), report.problems
    with pytest.raises(IntegrityError, match="head_signature"):
        heads.checkpoint(SIGNER)  # the legitimate writer does not sign the forged tail either
    with pytest.raises(IntegrityError, match="head_signature"):
        verify_before_acting(heads, Trust(SIGNER, "test"), what="resume")
    heads.close()


def test_a_head_signed_with_another_key_or_edited_fails(heads: Journal, journal_path: Path) -> None:
    assert heads.verify(public_key=Signer.generate().public_key_pem()).head_signed is False
    with sqlite3.connect(journal_path) as db:
        db.execute("UPDATE meta SET value = json_set(value, '$.deployment', 'other') WHERE name = 'head_signature'")
    assert "does not verify" in "\n".join(heads.verify(public_key=PUBLIC).problems)
    with pytest.raises(ValueError, match="kept by the journal"):
        heads.set_meta("head_signature", "{}")
    heads.close()


def test_a_checkpoint_renews_the_head_signature_and_deleting_it_is_caught(heads: Journal, journal_path: Path) -> None:
    heads.checkpoint(SIGNER)
    assert _signature(journal_path)["checkpoint"] == 6  # type: ignore[index]
    assert heads.verify(public_key=PUBLIC).status == VerifyStatus.VERIFIED
    with sqlite3.connect(journal_path) as db:
        db.execute("DELETE FROM checkpoints")
    report = heads.verify(public_key=PUBLIC)
    assert report.status == VerifyStatus.FAILED and "checkpoints were deleted" in "\n".join(report.problems)
    heads.close()


def test_a_journal_without_head_signatures_is_refused_until_an_operator_with_the_key_accepts_it(
    busy_journal: Journal,
) -> None:
    """Written before head signatures (no signer attached): refused even when a checkpoint covers its last event (a
    deleted head signature looks the same: tampering evidence); `journal sign-head`'s acceptance, signed, ends it."""
    from orchestrator._head_accept import accept, review, strict

    busy_journal.checkpoint(SIGNER)
    trust = Trust(SIGNER, "test")
    with pytest.raises(IntegrityError, match="head_signature: missing although the journal has 9 events"):
        verify_before_acting(busy_journal, trust, what="resume")
    busy_journal.record(node=None, kind="run_note")  # a tail no signature covers (a crash before the checkpoint)
    report = busy_journal.verify(public_key=PUBLIC)
    assert report.status == VerifyStatus.VERIFIED and report.head_signed is None  # the library's view
    assert strict(report, keyed=True).status == VerifyStatus.FAILED  # what `journal verify` and acting say
    assert strict(busy_journal.verify(), keyed=False).status == VerifyStatus.UNVERIFIED  # no key: no verdict on it
    with pytest.raises(IntegrityError, match=r"events 10\.\.10 come after the last signed checkpoint"):
        verify_before_acting(busy_journal, trust, what="resume")
    seen = review(busy_journal, report)
    assert (seen.why, seen.covered, [e["seq"] for e in seen.events]) == ("no head signature", 9, [10])
    busy_journal.sign_heads(SIGNER)
    seq = accept(busy_journal, seen, by="alice", reason="CHG-1: the crash's note checked")
    assert seq == 11
    report = verify_before_acting(busy_journal, trust, what="resume")
    assert report is not None and report.head_signed is True
    accepted = next(iter(busy_journal.events(kinds=["head_accepted"])))
    assert (accepted.actor, accepted.payload["first_seq"], accepted.payload["last_seq"]) == ("alice", 10, 10)


def test_the_hand_assembled_head_json_is_canonical_json() -> None:
    """_head builds the signed body and the meta value with f-strings on the commit path: they must equal
    canonical_json, whatever the deployment's characters (verify recomputes the body from the parsed record)."""
    from journal._chain import canonical_json
    from journal._head import _body, signed_head

    for deployment in (None, "acme", 'a"c\\m\u00e9\n'):
        assert (
            _body(deployment, 7, "ab" * 32, 3)
            == canonical_json({"checkpoint": 3, "deployment": deployment, "head": "ab" * 32, "seq": 7}).encode()
        )
        record = json.loads(signed_head(SIGNER, deployment, 7, "ab" * 32, 3))
        assert signed_head(SIGNER, deployment, 7, "ab" * 32, 3) == canonical_json(record)
    assert (
        _body(["x"], {"a": 1}, None, True)
        == canonical_json({"checkpoint": True, "deployment": ["x"], "head": None, "seq": {"a": 1}}).encode()
    )


def test_a_writer_that_cached_the_newest_checkpoint_sees_another_process_checkpoint(
    heads: Journal, journal_path: Path
) -> None:
    """The commit path keeps the newest checkpoint's seq; another connection's checkpoint must not be missed."""
    heads.record(node="mgr", kind="note")  # seq 7, the cache filled: no checkpoint (0)
    other = Journal.open(journal_path)
    other.sign_heads(SIGNER)
    other.checkpoint(SIGNER)  # checkpoint at seq 7, by another connection
    other.close()
    heads.record(node="mgr", kind="note")  # seq 8 must name checkpoint 7
    assert _signature(journal_path)["checkpoint"] == 7  # type: ignore[index]
    heads.checkpoint(SIGNER)  # this connection's own checkpoint at 8
    heads.record(node="mgr", kind="note")
    assert _signature(journal_path)["checkpoint"] == 8  # type: ignore[index]
    assert heads.verify(public_key=PUBLIC).status == VerifyStatus.VERIFIED
    heads.close()


def test_commit_seqs_writes_signs_and_checks_what_commit_does_and_returns_the_seqs(
    heads: Journal, journal_path: Path
) -> None:
    """Journal.commit_seqs (the engine's group commit, #11): one transaction of the same events, node rows and
    signed head as commit() makes, returning only their sequence numbers; an unknown node writes nothing."""
    moves = [
        Transition(
            node="mgr",
            kind="step_committed",
            step="work",
            from_state="bios_locked",
            to_state="installed",
            payload={"observed": {"mhz": 8000}, "changed": True},
            update={"step": None, "attempt": 0},
        ),
        Transition(node="conf-1", kind="step_started", step="work", attempt=1, update={"step": "work", "attempt": 1}),
    ]
    assert heads.commit_seqs(moves) == [7, 8]
    assert heads.commit_seqs([]) == []
    twin = Journal.open(journal_path.with_name("twin.sqlite"))
    twin.sign_heads(SIGNER)
    twin.bind_deployment("acme")
    twin.ensure_nodes(NODES)
    walk(twin, "mgr", ["reserved", "bios_locked"])
    expected = twin.commit(moves)
    got = [e for e in heads.events() if e.seq >= 7]

    def fields(e: object) -> tuple[object, ...]:
        return tuple(
            getattr(e, f)
            for f in ("seq", "node", "kind", "step", "attempt", "from_state", "to_state", "payload", "sets")
        )

    assert [fields(e) for e in got] == [fields(e) for e in expected]
    assert (heads.node("mgr").state, heads.node("conf-1").step) == ("installed", "work")  # type: ignore[union-attr]
    assert _signature(heads.path)["seq"] == 8  # type: ignore[index]
    report = heads.verify(public_key=PUBLIC)
    assert (report.status, report.signed_seq, report.head_seq) == (VerifyStatus.VERIFIED, 8, 8)
    with pytest.raises(JournalError, match="not in the journal"):
        heads.commit_seqs([Transition(node="ghost", kind="step_started", step="work")])
    assert heads.verify(public_key=PUBLIC).head_seq == 8
    twin.close()
    heads.close()
