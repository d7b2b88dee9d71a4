"""Issue #7, the journal's part: each attack on the record, written as the attacker would, and its outcome."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from journal_helpers import NODES, ROOT, rechain, walk

from config.errors import ConfigError, IntegrityError, JournalError
from journal import Journal, Signer, Transition, VerifyStatus, derive_nodes, generate_signing_key, public_key_pem

SIGNER = Signer.generate()
PUBLIC = SIGNER.public_key_pem()


@pytest.fixture
def signed(busy_journal: Journal) -> Journal:
    """The busy journal (seq 1..9) with a signed checkpoint at seq 9."""
    busy_journal.checkpoint(SIGNER)
    return busy_journal


def _rewrite_history(db: sqlite3.Connection) -> None:
    """Say mgr's seq 5 went to 'certified' (event, sets and row), and rechain."""
    db.execute("UPDATE events SET to_state = 'certified', sets = '{\"state\":\"certified\"}' WHERE seq = 5")
    db.execute("UPDATE events SET from_state = 'certified' WHERE seq = 6")
    rechain(db)


# --- node rows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("step", "global_settings"),  # skip the irreversible security wizard
        ("attempt", 9),  # a retry budget reset or spent
        ("gate", "operator_approval"),  # a gate invented or opened
        ("failed_from", "hardened"),  # a failure moved
        ("maintenance", 1),  # a node held or released
        ("maintenance_reason", "none"),  # the reason rewritten
        ("last_error", "all fine"),  # the error hidden
        ("last_seq", 2),  # the row's link to its events
        ("role", "conferencing"),  # the node's role
        ("updated_at", "2020-01-01T00:00:00.000000Z"),
    ],
)
def test_an_edited_node_row_column_fails_naming_it(
    signed: Journal, attacker: sqlite3.Connection, column: str, value: object
) -> None:
    """`update nodes set <column>=...` fails verify, naming the node and the column."""
    attacker.execute(f"UPDATE nodes SET {column} = ? WHERE name = 'mgr'", (value,))
    report = signed.verify(public_key=PUBLIC)
    assert report.status == VerifyStatus.FAILED
    assert any(p.startswith("node mgr: ") and column in p for p in report.problems), report.problems


def test_rows_equal_the_state_derived_from_events(busy_journal: Journal) -> None:
    """derive_nodes over the events gives every node row's columns, as commit applied them."""
    busy_journal.commit(
        [
            Transition(
                node="mgr", kind="step_started", step="harden", attempt=2, update={"step": "harden", "attempt": 2}
            ),
            Transition(node="conf-1", kind="gate_waiting", update={"gate": "operator_approval"}),
            Transition(
                node="conf-2", kind="maintenance_on", update={"maintenance": True, "maintenance_reason": "disk"}
            ),
            Transition(
                node="conf-2",
                kind="step_failed",
                update={"state": "failed", "failed_from": "deployed", "last_error": "boom"},
            ),
        ]
    )
    derived = derive_nodes(busy_journal.events())
    for row in busy_journal.nodes():
        fields = derived[row.name]
        for column in (
            "role",
            "state",
            "step",
            "attempt",
            "gate",
            "last_error",
            "failed_from",
            "maintenance",
            "maintenance_reason",
            "updated_at",
            "last_seq",
        ):
            assert getattr(fields, column) == getattr(row, column), (row.name, column)
    assert derived["conf-2"].maintenance is True and derived["conf-2"].state == "failed"
    assert busy_journal.derived_nodes() == derived


# --- keys and signatures ------------------------------------------------------------------------


def test_deleting_the_key_gives_unverified(signed: Journal, journal_path: Path) -> None:
    """No key beside the journal to delete; without a trusted public key the verdict is UNVERIFIED."""
    assert not Path(f"{journal_path}.key").exists()
    report = signed.verify()
    assert report.status == VerifyStatus.UNVERIFIED and not report.verified
    # the checkpoints deleted too: a trusted key finds nothing signed, still not a pass
    signed._conn.execute("DELETE FROM checkpoints")
    assert signed.verify(public_key=PUBLIC).status == VerifyStatus.UNVERIFIED


def test_rewrite_resigned_with_the_attackers_key_fails(signed: Journal, attacker: sqlite3.Connection) -> None:
    """History rewritten, rechained and re-signed with mallory's own key fails against the trusted key."""
    _rewrite_history(attacker)
    attacker.execute("UPDATE nodes SET state = 'certified' WHERE name = 'mgr' AND 0")
    attacker.execute("DELETE FROM checkpoints")
    mallory = Signer.generate()
    signed.checkpoint(mallory)
    assert signed.verify(public_key=mallory.public_key_pem()).verified  # only mallory's key says yes
    report = signed.verify(public_key=PUBLIC)
    assert report.status == VerifyStatus.FAILED
    assert any("signature does not match the trusted public key" in p for p in report.problems)


def test_a_signature_verified_once_then_edited_fails(signed: Journal, attacker: sqlite3.Connection) -> None:
    """Signatures already verified in this process are remembered by their bytes: an edited one is checked again."""
    assert signed.verify(public_key=PUBLIC).verified and signed.verify(public_key=PUBLIC).verified
    attacker.execute("UPDATE checkpoints SET head = ? WHERE id = (SELECT max(id) FROM checkpoints)", ("f" * 64,))
    report = signed.verify(public_key=PUBLIC)
    assert report.status == VerifyStatus.FAILED
    assert any("signature does not match the trusted public key" in p for p in report.problems)


def test_rewrite_checked_against_a_kept_checkpoint_list_fails(
    signed: Journal, attacker: sqlite3.Connection, tmp_path: Path
) -> None:
    """A rewrite with the local checkpoints removed is caught by the list kept elsewhere (syslog)."""
    kept = tmp_path / "syslog-copy.checkpoints"
    assert signed.checkpoints_path is not None
    kept.write_bytes(signed.checkpoints_path.read_bytes())
    _rewrite_history(attacker)
    attacker.execute("DELETE FROM checkpoints")
    signed.checkpoints_path.unlink()
    report = signed.verify(public_key=PUBLIC, checkpoints=kept)
    assert report.status == VerifyStatus.FAILED
    assert any("kept checkpoint 1 (seq 9): says seq 9 had head" in p and "rewritten" in p for p in report.problems)


def test_cut_tail_checked_against_a_kept_list_fails(
    signed: Journal, attacker: sqlite3.Connection, tmp_path: Path
) -> None:
    """Events cut after the last local checkpoint was removed are named from the kept list."""
    kept = [dict(cp) for cp in signed.checkpoints()]
    attacker.execute("DELETE FROM events WHERE seq > 6")
    attacker.execute("DELETE FROM checkpoints")
    rechain(attacker)
    report = signed.verify(public_key=PUBLIC, checkpoints=kept)
    assert any(
        "kept checkpoint 1 (seq 9): the chain ends at seq 6; events 7..9 were deleted" in p for p in report.problems
    ), report.problems


def test_a_checkpoint_is_never_signed_over_a_tampered_journal(signed: Journal, attacker: sqlite3.Connection) -> None:
    """checkpoint() verifies first: an edited row is refused, nothing is signed."""
    attacker.execute("UPDATE nodes SET step = 'global_settings' WHERE name = 'mgr'")
    with pytest.raises(IntegrityError, match="node mgr: step"):
        signed.checkpoint(SIGNER)
    assert len(signed.checkpoints()) == 1


# --- continuity and the file ------------------------------------------------------------------------


def test_a_from_state_discontinuity_fails(journal: Journal) -> None:
    """Two processes driving one node: a from_state that is not the previous to_state fails, naming the seq."""
    walk(journal, "mgr", ["reserved", "bios_locked"])
    journal.record(node="mgr", kind="step_committed", from_state="reserved", to_state="installed")
    report = journal.verify()
    assert report.status == VerifyStatus.FAILED
    assert any(
        p.startswith("event seq 6: node mgr moves from_state 'reserved' but its state was 'bios_locked'")
        for p in report.problems
    ), report.problems


def test_a_corrupted_page_fails_integrity_check(journal_path: Path) -> None:
    """A damaged index page is found by PRAGMA integrity_check."""
    with Journal.open(journal_path) as j:
        j.ensure_nodes(NODES)
        j.commit([Transition(node="mgr", kind="tick", attempt=i, payload={"pad": "x" * 200}) for i in range(400)])
        root = j._conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events_node_seq'").fetchone()[0]
        page = j._conn.execute("PRAGMA page_size").fetchone()[0]
    with open(journal_path, "r+b") as f:  # the journal is closed: the WAL is in the main file
        f.seek((root - 1) * page + 8)
        f.write(b"\xff" * 64)
    with Journal.open(journal_path) as j:
        report = j.verify()
    assert report.status == VerifyStatus.FAILED
    assert any(p.startswith("integrity_check: ") for p in report.problems), report.problems


def test_a_database_that_is_not_a_journal_is_refused_unchanged(tmp_path: Path) -> None:
    """Journal.open on another SQLite file (the world) refuses it and leaves it as it was."""
    world = tmp_path / "world.sqlite"
    with sqlite3.connect(world) as db:
        db.execute("CREATE TABLE vms (name TEXT)")
    before = world.read_bytes()
    with pytest.raises(JournalError, match="not a journal"):
        Journal.open(world)
    assert world.read_bytes() == before and not Path(f"{world}-wal").exists()


def test_an_older_schema_is_refused(journal_path: Path) -> None:
    """A journal of another schema version is named, not silently upgraded."""
    with Journal.open(journal_path):
        pass
    with sqlite3.connect(journal_path) as db:
        db.execute("UPDATE meta SET value = '1' WHERE name = 'schema_version'")
    with pytest.raises(JournalError, match="schema version 1"):
        Journal.open(journal_path)


def test_readonly_open_never_creates_or_alters(signed: Journal, journal_path: Path, tmp_path: Path) -> None:
    """A read-only open reads and verifies; it creates no journal and writes nothing."""
    missing = tmp_path / "none.sqlite"
    with pytest.raises(JournalError, match="does not exist"):
        Journal.open(missing, readonly=True)
    assert not missing.exists()
    signed.close()
    before = journal_path.read_bytes()
    with Journal.open(journal_path, readonly=True) as j:
        assert j.verify(public_key=PUBLIC).verified
        with pytest.raises(JournalError, match="read-only"):
            j.record(node="mgr", kind="x")
        with pytest.raises(JournalError, match="read-only"):
            j.checkpoint(SIGNER)
    assert journal_path.read_bytes() == before


def test_the_journal_belongs_to_one_deployment(journal_path: Path) -> None:
    """Bound at first open; another deployment's open is refused (ConfigError) and changes nothing."""
    with Journal.open(journal_path, deployment="acme-prod") as j:
        j.ensure_nodes(NODES)
        assert j.deployment == "acme-prod"
        events = j.statistics()["events"]
    with pytest.raises(ConfigError, match="belongs to deployment 'acme-prod', not 'acme-lab'"):
        Journal.open(journal_path, deployment="acme-lab")
    with Journal.open(journal_path, deployment="acme-prod") as j:
        assert j.statistics()["events"] == events
        record = j.checkpoint(SIGNER)
        assert record["deployment"] == "acme-prod"
        j._conn.execute("UPDATE meta SET value = 'acme-lab' WHERE name = 'deployment'")
        report = j.verify(public_key=PUBLIC)
    assert any("meta deployment 'acme-lab' differs from the deployment_bound event" in p for p in report.problems)
    assert any("signed for deployment 'acme-prod'" in p for p in report.problems)


# --- files and crash windows ------------------------------------------------------------------------


def test_files_are_created_0600(signed: Journal, journal_path: Path, tmp_path: Path) -> None:
    """Journal, its WAL, the checkpoints file, exports and the signing key are 0600."""
    out = tmp_path / "export.jsonl"
    signed.export_to(out, signer=SIGNER)
    key = generate_signing_key(tmp_path / "private")
    assert signed.checkpoints_path is not None
    for path in (journal_path, Path(f"{journal_path}-wal"), signed.checkpoints_path, out, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700


def test_checkpoint_lines_verify_on_their_own(signed: Journal) -> None:
    """The checkpoints file holds one canonical, signed JSON line per checkpoint."""
    signed.record(node="mgr", kind="tick")
    signed.checkpoint(SIGNER)
    assert signed.checkpoints_path is not None
    lines = [json.loads(line) for line in signed.checkpoints_path.read_text().splitlines()]
    assert [cp["seq"] for cp in lines] == [9, 10]
    assert signed.verify(public_key=PUBLIC, checkpoints=lines).signed_seq == 10
    assert signed.verify(public_key=PUBLIC, incremental=True).start_seq == 11  # from the newest
    snapshots = signed._conn.execute("SELECT snapshot IS NOT NULL FROM checkpoints ORDER BY id").fetchall()
    assert snapshots == [(0,), (1,)]  # only the newest keeps its copy of the rows


def test_a_killed_export_keeps_the_previous_file(signed: Journal, tmp_path: Path) -> None:
    """SIGKILL in the middle of `export -o FILE` leaves the previous export whole, and no temp file."""
    out = tmp_path / "audit.jsonl"
    signed.export_to(out, signer=SIGNER)
    before = out.read_bytes()
    signed.close()
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        import journal._reader as reader
        from journal import Journal
        def dying(events, out, **kw):
            out.write("half a line")
            out.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        reader.write_export = dying
        Journal.open({str(signed.path)!r}).export_to({str(out)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert out.read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".audit.jsonl.")]
    assert len(leftovers) <= 1  # SIGKILL leaves the temp file; the target is never half written


def test_a_failed_export_leaves_no_trace(signed: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export that fails part way removes its temporary file and keeps the previous export."""
    out = tmp_path / "audit.csv"
    out.write_text("previous\n")
    import journal._reader as reader

    def failing(*args: object, **kwargs: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(reader, "write_export", failing)
    with pytest.raises(OSError, match="disk full"):
        signed.export_to(out, fmt="csv")
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir() if "audit" in p.name) == ["audit.csv"]


def test_a_killed_key_generation_never_leaves_half_a_key(tmp_path: Path) -> None:
    """SIGKILL while the key is written leaves no key file; a later run makes a whole one."""
    folder = tmp_path / "private"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        import journal._files as files
        real = files.os.fsync
        def dying(fd):
            os.kill(os.getpid(), signal.SIGKILL)
        files.os.fsync = dying
        from journal import generate_signing_key
        generate_signing_key({str(folder)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (folder / "journal-signing-key.pem").exists()
    key = generate_signing_key(folder)
    signer = Signer.from_pem(key.read_bytes())
    assert public_key_pem(key.read_bytes()) == signer.public_key_pem()
    assert generate_signing_key(folder) == key and Signer.from_pem(key.read_bytes()).key_id == signer.key_id


def test_signer_never_shows_the_key() -> None:
    """A signer's repr and its errors hold no key material."""
    signer = Signer.generate()
    assert "PRIVATE" not in repr(signer) and signer.key_id in repr(signer)
    with pytest.raises(JournalError) as caught:
        Signer.from_pem(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    assert "not a key" not in str(caught.value)


# --- incremental verification ------------------------------------------------------------------------


def test_incremental_verify_reads_only_the_tail(signed: Journal, attacker: sqlite3.Connection) -> None:
    """From the last signed checkpoint: the tail and every node row are checked, quickly."""
    walk(signed, "conf-2", ["reserved", "bios_locked"])
    report = signed.verify(public_key=PUBLIC, incremental=True)
    assert report.verified and report.start_seq == 10 and report.events == 2
    attacker.execute("UPDATE nodes SET gate = 'operator_approval' WHERE name = 'mgr'")  # a row of before
    report = signed.verify(public_key=PUBLIC, incremental=True)
    assert report.status == VerifyStatus.FAILED and any(p.startswith("node mgr: gate") for p in report.problems)
    attacker.execute("UPDATE nodes SET gate = NULL WHERE name = 'mgr'")
    attacker.execute("UPDATE events SET actor = 'mallory' WHERE seq = 11")  # the unsigned tail
    report = signed.verify(public_key=PUBLIC, incremental=True)
    assert report.status == VerifyStatus.FAILED and any("event seq 11" in p for p in report.problems)


def test_incremental_verify_rejects_an_edited_snapshot(signed: Journal, attacker: sqlite3.Connection) -> None:
    """The node snapshot a checkpoint stores is bound by its signed digest."""
    snapshot = json.loads(attacker.execute("SELECT snapshot FROM checkpoints").fetchone()[0])
    snapshot["mgr"]["step"] = "global_settings"
    attacker.execute("UPDATE checkpoints SET snapshot = ?", (json.dumps(snapshot),))
    attacker.execute("UPDATE nodes SET step = 'global_settings' WHERE name = 'mgr'")
    report = signed.verify(public_key=PUBLIC, incremental=True)
    assert report.status == VerifyStatus.FAILED
    assert any("node snapshot does not match the signed digest" in p for p in report.problems)


def test_a_process_killed_mid_checkpoint_leaves_a_journal_that_verifies(journal_path: Path, tmp_path: Path) -> None:
    """SIGKILL during checkpoints: what was recorded verifies, against the database and the file."""
    key = generate_signing_key(tmp_path / "private")
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from journal import Journal, Signer, Transition
        signer = Signer.from_pem(Path({str(key)!r}).read_bytes())
        j = Journal.open({str(journal_path)!r})
        j.ensure_nodes({NODES!r})
        i = 0
        while True:
            j.commit([Transition(node="mgr", kind="tick", attempt=i)])
            j.checkpoint(signer)
            print(i, flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if int(line) >= 20:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    public = Signer.from_pem(key.read_bytes()).public_key_pem()
    with Journal.open(journal_path) as j:
        report = j.verify(public_key=public, checkpoints=j.checkpoints_path)
        assert report.verified, report.problems
        assert report.signed_seq >= 24


def test_successive_checkpoints_store_the_canonical_snapshot_and_still_see_a_stored_text_edited(
    signed: Journal, attacker: sqlite3.Connection
) -> None:
    """A checkpoint after the first re-encodes only the nodes with new events (issue #11): its stored text is
    canonical_json of the rows derived from every event, and a kept snapshot edited in the file is not
    trusted for being kept in this process: the next checkpoint refuses."""
    from journal._chain import canonical_json
    from journal._derive import Deriver, text_digest

    walk(signed, "conf-2", ["reserved"])
    signed.checkpoint(SIGNER)
    walk(signed, "mgr", ["certified"])
    record = signed.checkpoint(SIGNER)
    deriver = Deriver()
    for e in signed.events():
        deriver.feed(e.seq, e.at, e.node, e.kind, e.from_state, e.to_state, e.payload, e.sets)
    (text,) = attacker.execute("SELECT snapshot FROM checkpoints WHERE snapshot IS NOT NULL").fetchone()
    assert text == canonical_json(deriver.rows) and text_digest(text) == record["nodes"]
    assert signed.verify(public_key=PUBLIC).ok

    attacker.execute("UPDATE checkpoints SET snapshot = replace(snapshot, 'certified', 'hardened')")
    walk(signed, "conf-1", ["installed"])
    with pytest.raises(IntegrityError, match="snapshot does not match the signed digest"):
        signed.checkpoint(SIGNER)
