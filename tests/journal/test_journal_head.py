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


def test_a_journal_without_head_signatures_is_acted_on_only_when_a_checkpoint_covers_its_last_event(
    busy_journal: Journal,
) -> None:
    """Written before head signatures (no signer attached): verify says so; acting needs the last event checkpointed."""
    busy_journal.checkpoint(SIGNER)
    trust = Trust(SIGNER, "test")
    report = verify_before_acting(busy_journal, trust, what="resume")
    assert report is not None and report.head_signed is None and report.signed_seq == report.head_seq == 9
    busy_journal.record(node=None, kind="run_note")  # a tail no signature covers (a crash before the checkpoint)
    report = busy_journal.verify(public_key=PUBLIC)
    assert report.status == VerifyStatus.VERIFIED and report.head_signed is None
    assert any("no head signature" in p for p in report.problems), report.problems
    with pytest.raises(IntegrityError, match=r"events 10\.\.10 come after the last signed checkpoint"):
        verify_before_acting(busy_journal, trust, what="resume")
    busy_journal.checkpoint(SIGNER)
    assert verify_before_acting(busy_journal, trust, what="resume") is not None
