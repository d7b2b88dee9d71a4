"""A checkpoint in a hold rides in the hold's one transaction; its line is appended only after that COMMIT (#11)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from journal_helpers import walk

from config.errors import IntegrityError
from journal import Journal, Signer, Transition
from journal._chain import canonical_json

SIGNER = Signer.generate()


class _Commits:
    """The writes of each durable transaction on the journal's connection, in order (a read's COMMIT apart)."""

    def __init__(self, journal: Journal) -> None:
        self.transactions: list[list[str]] = []
        self._current: list[str] = []
        journal._conn.set_trace_callback(self._trace)

    def _trace(self, statement: str) -> None:
        head = statement.lstrip().upper()
        if head.startswith("COMMIT"):
            if self._current:
                self.transactions.append(self._current)
            self._current = []
        elif head.startswith("ROLLBACK") and not head.startswith("ROLLBACK TO"):
            self._current = []
        elif head.startswith(("INSERT", "UPDATE", "DELETE")):
            self._current.append(" ".join(statement.split())[:40])


def _lines(journal: Journal) -> list[str]:
    path = journal.checkpoints_path
    assert path is not None
    return path.read_text().splitlines() if path.exists() else []


def test_a_checkpoint_in_a_hold_commits_it_with_what_it_held_and_then_writes_its_line(journal: Journal) -> None:
    """The held event and the checkpoint are ONE durable transaction; the file's line is the record, after it."""
    journal.sign_heads(SIGNER)
    journal.checkpoint(SIGNER)
    commits = _Commits(journal)
    journal.hold()
    journal.commit([Transition(node=None, kind="run_started")])  # a riding kind: held, not committed
    assert commits.transactions == []
    record = journal.checkpoint(SIGNER)
    (transaction,) = commits.transactions
    assert any(s.startswith("INSERT INTO events") for s in transaction), transaction
    assert any(s.startswith("INSERT INTO checkpoints") for s in transaction), transaction
    assert _lines(journal)[-1] == canonical_json(record)
    assert record["seq"] == journal.statistics()["last_seq"]
    assert journal.verify(public_key=SIGNER.public_key_pem(), checkpoints=journal.checkpoints_path).verified
    journal.commit([Transition(node=None, kind="run_note")])
    assert len(commits.transactions) == 2  # the hold ended with the checkpoint: this one committed alone


def test_a_checkpoint_refused_in_a_hold_commits_what_it_held_alone_and_writes_no_line(
    journal: Journal, attacker: sqlite3.Connection
) -> None:
    """A journal that does not verify: nothing is signed, the held records are still committed, the file unchanged."""
    walk(journal, "mgr", ["reserved"])
    attacker.execute("UPDATE nodes SET step = 'global_settings' WHERE name = 'mgr'")
    journal.hold()
    journal.commit([Transition(node=None, kind="run_started")])
    with pytest.raises(IntegrityError, match="refusing to sign"):
        journal.checkpoint(SIGNER)
    assert journal.checkpoints() == [] and _lines(journal) == []
    (kind,) = attacker.execute("SELECT kind FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    assert kind == "run_started"  # committed: another connection reads it


def test_the_checkpoints_the_file_lacks_are_the_databases_newer_than_its_last_line(journal: Journal) -> None:
    """A stop between a checkpoint's COMMIT and its line: exactly those records are missing, and appending
    them gives back, byte for byte, the file an uninterrupted process writes."""
    path = journal.checkpoints_path
    assert path is not None
    walk(journal, "mgr", ["reserved"])
    journal.checkpoint(SIGNER)
    walk(journal, "mgr", ["bios_locked"])
    journal.checkpoint(SIGNER)
    walk(journal, "mgr", ["installed"])
    journal.checkpoint(SIGNER)
    whole = path.read_bytes()
    assert journal.checkpoints_missing_from_file() == []
    lines = whole.splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:1]))  # as if the process stopped twice before writing a line
    missing = journal.checkpoints_missing_from_file()
    assert [r["seq"] for r in missing] == [r["seq"] for r in journal.checkpoints()[1:]]
    journal.append_checkpoint_lines(missing)
    assert path.read_bytes() == whole
    path.unlink()  # no file at all: every checkpoint is missing from it
    assert journal.checkpoints_missing_from_file() == journal.checkpoints()


def test_a_line_older_than_the_database_is_not_missing_but_a_newer_one_still_fails_verify(
    journal: Journal, tmp_path: Path
) -> None:
    """Only the database's tail is mended: a kept line naming a head the chain lacks stays a failure of verify."""
    walk(journal, "mgr", ["reserved"])
    journal.checkpoint(SIGNER)
    kept = tmp_path / "kept.checkpoints"
    assert journal.checkpoints_path is not None
    kept.write_bytes(journal.checkpoints_path.read_bytes())
    walk(journal, "mgr", ["bios_locked"])
    journal.checkpoint(SIGNER)
    forged = dict(journal.checkpoints()[-1], seq=journal.statistics()["last_seq"] + 5)
    kept.write_text(kept.read_text() + canonical_json(forged) + "\n")
    report = journal.verify(public_key=SIGNER.public_key_pem(), checkpoints=kept)
    assert not report.ok and any("truncated" in p or "signature" in p for p in report.problems), report.problems
