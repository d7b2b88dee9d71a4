"""Issue #7, tampering from the command line: each kind of edit of a finished simulation's events, node rows, meta,
checkpoints, keys and exports, made as an attacker with write access to the journal's directory would, is caught by
`journal verify` (exit 4), and `resume --all` refuses to act on it and appends nothing.

The API-level forms of these attacks (every node-row column, a rewrite re-signed with another key, a kept list that
catches a rewrite or a cut) are in tests/journal/test_journal_trust.py, and the syslog server's copy catching a
rewrite signed with the stolen key in test_trust.py; this table is the operator's view of all of them at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from journal import Journal, generate_signing_key, kinds
from orchestrator._trust import generated_key_path
from tests.journal.journal_helpers import append_forged_approval
from tests.journal.journal_helpers import rechain as rechain_all
from tests.orchestrator.cli_helpers import event_count, invoke, public_key, sim_config, sim_env, simulate_two


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One two-node simulation (the Manager failed at the wizard), and the auditor's copy of its public key."""
    base = tmp_path_factory.mktemp("tamper")
    src = base / "src"
    code, out, err = simulate_two(src, "--faults", "permanent=security_wizard@pexip-mgr")
    assert code == 1, out + err  # failed at the wizard: `resume --all` has work to do
    return src / "j.sqlite", public_key(src / "j.sqlite", base / "auditor.pem")


@pytest.fixture
def journal(finished: tuple[Path, Path], tmp_path: Path) -> Iterator[Path]:
    """A copy of the simulation with its key, its checkpoints and its own world (the world path in meta follows it)."""
    src, _ = finished
    folder = tmp_path / "sim"
    shutil.copytree(src.parent, folder)
    key = generated_key_path(folder / src.name)
    key.parent.mkdir(mode=0o700)
    shutil.copy2(generated_key_path(src), key)
    path = folder / src.name
    with sqlite3.connect(path) as db:
        meta = json.loads(db.execute("SELECT value FROM meta WHERE name = 'simulation'").fetchone()[0])
        meta["world"] = str(folder / "w.sqlite")
        db.execute("UPDATE meta SET value = ? WHERE name = 'simulation'", (json.dumps(meta),))
    yield path


def _sql(*statements: str, rechain: bool = False) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        with sqlite3.connect(path) as db:
            for statement in statements:
                db.execute(statement)
            if rechain:
                rechain_all(db)

    return edit


def _checkpoint_line(path: Path) -> None:
    """The journal's own checkpoints file: its last line says another head (the database is left alone)."""
    file = Path(f"{path}.checkpoints")
    lines = file.read_text().splitlines()
    record = json.loads(lines[-1])
    record["head"] = "0" * 64
    file.write_text("\n".join([*lines[:-1], json.dumps(record)]) + "\n")


def _no_checkpoints(path: Path) -> None:
    _sql("DELETE FROM checkpoints")(path)
    Path(f"{path}.checkpoints").unlink()


def _no_checkpoints_nor_head_signature(path: Path) -> None:
    _no_checkpoints(path)
    _sql("DELETE FROM meta WHERE name = 'head_signature'")(path)


def _no_newest_checkpoint(path: Path) -> None:
    _sql("DELETE FROM checkpoints WHERE id = (SELECT max(id) FROM checkpoints)")(path)
    file = Path(f"{path}.checkpoints")
    file.write_text("".join(line + "\n" for line in file.read_text().splitlines()[:-1]))


_MGR_LAST = "(SELECT max(seq) FROM events WHERE node = 'pexip-mgr')"

# (name, edit, what `journal verify --public-key` says)
ATTACKS: list[tuple[str, Callable[[Path], None], str]] = [
    # --- events
    (
        "an event's payload",
        _sql("UPDATE events SET payload = '{\"argv\":[\"nothing to see\"]}' WHERE kind = 'run_started'"),
        "content does not match its hash",
    ),
    ("an event deleted", _sql("DELETE FROM events WHERE seq = 10"), "seq 10 missing before it"),
    (
        "two events swapped",
        _sql(
            "UPDATE events SET seq = -1 WHERE seq = 10",
            "UPDATE events SET seq = 10 WHERE seq = 11",
            "UPDATE events SET seq = 11 WHERE seq = -1",
        ),
        "seq 10",
    ),
    (
        "an event rewritten and the chain recomputed",
        _sql("UPDATE events SET actor = 'mallory' WHERE seq = 10", rechain=True),
        "the history was rewritten",
    ),
    (
        "the tail cut and the chain recomputed",
        _sql(f"DELETE FROM events WHERE seq >= {_MGR_LAST}", rechain=True),
        "were deleted (truncated)",
    ),
    # --- node rows
    ("a node row deleted", _sql("DELETE FROM nodes WHERE name = 'pexip-mgr'"), "node pexip-mgr: has events"),
    (
        "a node row inserted",
        _sql("INSERT INTO nodes (name, role, state) VALUES ('pexip-conf-9', 'conferencing', 'ldap_authenticated')"),
        "node pexip-conf-9: has no events",
    ),
    (
        "a node row's state",
        _sql("UPDATE nodes SET state = 'hardened' WHERE name = 'pexip-mgr'"),
        "node pexip-mgr: state",
    ),
    # --- meta
    ("the head deleted", _sql("DELETE FROM meta WHERE name = 'head'"), "seal: missing"),
    (
        "the head moved back",
        _sql('UPDATE meta SET value = \'{"seq":5,"hash":"00"}\' WHERE name = \'head\''),
        "seal: sealed at seq 5",
    ),
    ("the deployment renamed", _sql("UPDATE meta SET value = 'other' WHERE name = 'deployment'"), "meta deployment"),
    (
        "the lifecycle definition's hash",  # a journal of another orchestrator version passed off as this one's
        _sql("UPDATE meta SET value = 'f00d' WHERE name = 'definition_hash'"),
        "meta definition_hash 'f00d' differs from the lifecycle definition event",
    ),
    # --- checkpoints
    (
        "a checkpoint's signature",
        _sql("UPDATE checkpoints SET signature = 'AAAA' WHERE id = (SELECT max(id) FROM checkpoints)"),
        "signature does not match the trusted public key",
    ),
    (
        "a checkpoint's head",
        _sql("UPDATE checkpoints SET head = '0000' WHERE id = (SELECT max(id) FROM checkpoints)"),
        "signature does not match the trusted public key",
    ),
    (
        "a checkpoint's node snapshot",
        _sql("UPDATE checkpoints SET snapshot = '{}' WHERE snapshot IS NOT NULL"),
        "its node snapshot does not match the signed digest",
    ),
    ("every checkpoint deleted, and their file", _no_checkpoints, "checkpoints were deleted or added"),
    ("every checkpoint and the head signature deleted", _no_checkpoints_nor_head_signature, "UNVERIFIED"),
    ("the newest checkpoint deleted, and its line", _no_newest_checkpoint, "the journal's newest is at seq"),
    # --- the head signature (journal/_head.py)
    (
        "the head signature's seq",
        _sql("UPDATE meta SET value = json_set(value, '$.seq', 3) WHERE name = 'head_signature'"),
        "meta head_signature: does not verify against the trusted public key",
    ),
    # The run's closing checkpoint is the file's only line: a fresh journal's opening records are head-signed, not
    # checkpointed (issue #11).
    ("a line of the checkpoints file", _checkpoint_line, "kept checkpoint 1"),
    # a wholly checkpointed journal: a deleted integrity record is tampering evidence (issue #7, point 3)
    (
        "only the head signature deleted",
        _sql("DELETE FROM meta WHERE name = 'head_signature'"),
        "meta head_signature: missing although the journal has",
    ),
]


@pytest.mark.parametrize(("edit", "said"), [(e, s) for _, e, s in ATTACKS], ids=[n for n, _, _ in ATTACKS])
def test_each_kind_of_edit_fails_verify_and_resume_acts_on_none(
    finished: tuple[Path, Path], journal: Path, edit: Callable[[Path], None], said: str
) -> None:
    """The untouched copy verifies; after the edit `journal verify` exits 4 saying what, and `resume --all` refuses
    (4, or 2 for a journal that names another deployment) without appending an event: it verifies the whole journal,
    not only what follows the last signed checkpoint (every edit of events here is older than that checkpoint)."""
    _, pem = finished
    code, out, err = invoke("--journal", str(journal), "journal", "verify", "--public-key", str(pem))
    assert code == 0 and "VERIFIED" in out, out + err
    edit(journal)
    before = event_count(journal)
    code, out, err = invoke("--journal", str(journal), "journal", "verify", "--public-key", str(pem))
    assert code == 4 and said in err, out + err
    code, _, err = invoke("--journal", str(journal), "resume", "--all")
    assert code in (2, 4), err
    assert event_count(journal) == before


def test_a_replaced_signing_key_signs_nothing_and_forges_nothing(finished: tuple[Path, Path], journal: Path) -> None:
    """The journal's key swapped for the attacker's own: `resume --all` and `approve` refuse (exit 4, the checkpoints
    are not that key's) and append nothing; the auditor's key still verifies the untouched record."""
    _, pem = finished
    key = generated_key_path(journal)
    key.unlink()
    generate_signing_key(key.parent, key.name)
    before = event_count(journal)
    for command in (["resume", "--all"], ["approve", "pexip-mgr", "security_wizard", "--by", "mallory"]):
        code, _, err = invoke("--journal", str(journal), *command)
        assert code == 4 and "signature does not match the trusted public key" in err, err
    assert event_count(journal) == before
    code, out, err = invoke("--journal", str(journal), "journal", "verify", "--public-key", str(pem))
    assert code == 0 and "VERIFIED" in out, out + err
    code, _, err = invoke("--journal", str(journal), "journal", "verify")  # with the key found where it was kept
    assert code == 4 and "signature does not match the trusted public key" in err, err


def test_an_export_with_an_edited_row_fails_from_the_command_line(finished: tuple[Path, Path], journal: Path) -> None:
    """`journal verify FILE` of an export one of whose rows was edited exits 4 naming the row."""
    _, pem = finished
    export = journal.parent.parent / "export.jsonl"
    assert invoke("--journal", str(journal), "journal", "export", "-o", str(export))[0] == 0
    lines = export.read_text().splitlines()
    row = json.loads(lines[5])
    row["actor"] = "mallory"
    lines[5] = json.dumps(row)
    export.write_text("\n".join(lines) + "\n")
    code, out, err = invoke("--journal", str(journal), "journal", "verify", str(export), "--public-key", str(pem))
    assert code == 4 and "content does not match its hash" in err, out + err


# --- a meta row is not in the chain: it must never decide what the engine may do -------------------------------


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    sim_env(tmp_path, monkeypatch)
    return sim_config(tmp_path)


def test_a_meta_row_saying_simulation_approves_nothing(configured: Path, tmp_path: Path) -> None:
    """A configured deployment's journal given a `simulation` meta row (one INSERT, outside the chain) still waits for
    an operator at the security wizard: `resume --all` exits 3 and the wizard never ran. Without -c, the journal is
    refused as another deployment's, before any world is opened."""
    assert invoke("-c", str(configured), "run")[0] == 3  # waiting for the operator's approval of the wizard
    path = tmp_path / "orchestrator.journal.sqlite"
    planted = tmp_path / "planted-world.sqlite"
    with sqlite3.connect(path) as db:
        planted_meta = json.dumps({"nodes": 4, "world": str(planted)})
        db.execute("INSERT INTO meta (name, value) VALUES ('simulation', ?)", (planted_meta,))
    code, out, err = invoke("-c", str(configured), "resume", "--all")
    assert code == 3, out + err
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state FROM nodes WHERE name = 'pexip-mgr'").fetchone()[0] == "awaiting_approval"
        opened = db.execute("SELECT count(*) FROM events WHERE kind = 'gate_opened'").fetchone()[0]
    assert opened == 0
    before = event_count(path)
    (tmp_path / "elsewhere").mkdir()
    os.chdir(tmp_path / "elsewhere")  # no orchestrator.toml here: the journal's own meta would decide
    code, _, err = invoke("--journal", str(path), "resume", "--all")
    assert code == 2 and re.search(r"belongs to deployment '[^']+', not 'simulation'", err), err
    assert not planted.exists() and event_count(path) == before


def test_an_old_event_turned_into_an_approval_does_not_open_the_wizards_gate(configured: Path, tmp_path: Path) -> None:
    """One UPDATE of an event older than the last signed checkpoint, into an operator's approval of the security
    wizard, leaves the rows and the tail as signed: `resume --all` still refuses (exit 4), the wizard never runs."""
    assert invoke("-c", str(configured), "run")[0] == 3
    path = tmp_path / "orchestrator.journal.sqlite"
    approval = '{"approved":true,"gate":"security_wizard","reason":""}'
    with sqlite3.connect(path) as db:
        (checkpoint,) = db.execute("SELECT max(seq) FROM checkpoints").fetchone()
        (seq,) = db.execute(
            "SELECT min(seq) FROM events WHERE node = 'pexip-mgr' AND kind = 'step_started' "
            "AND step = 'reserve_resources'"
        ).fetchone()
        assert seq < checkpoint
        db.execute(
            "UPDATE events SET kind = 'gate_opened', step = 'security_wizard', actor = 'alice', payload = ? "
            "WHERE seq = ?",
            (approval, seq),
        )
    before = event_count(path)
    code, _, err = invoke("-c", str(configured), "resume", "--all")
    assert code == 4 and f"event seq {seq}: content does not match its hash" in err, err
    assert event_count(path) == before
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state FROM nodes WHERE name = 'pexip-mgr'").fetchone()[0] == "awaiting_approval"


@pytest.mark.parametrize("drop_signature", [False, True], ids=["head-signature-kept", "head-signature-deleted"])
def test_an_approval_appended_after_the_last_checkpoint_does_not_open_the_wizards_gate(
    configured: Path, tmp_path: Path, drop_signature: bool
) -> None:
    """A forged `gate_opened` appended after the last signed checkpoint (chain, head and row fixed by hand) must not let
    `resume --all` run the irreversible security wizard: the head signature names the old head; deleted, the forged
    event is a tail no signature covers. `journal verify` says which."""
    assert invoke("-c", str(configured), "run")[0] == 3
    path = tmp_path / "orchestrator.journal.sqlite"
    with sqlite3.connect(path) as db:
        signed = json.loads(db.execute("SELECT value FROM meta WHERE name = 'head_signature'").fetchone()[0])
        assert signed["seq"] == db.execute("SELECT max(seq) FROM events").fetchone()[0]
        if drop_signature:
            db.execute("DELETE FROM meta WHERE name = 'head_signature'")
        forged = append_forged_approval(db, "pexip-mgr", '{"approved":true,"gate":"security_wizard","reason":""}')
    before = event_count(path)
    code, _, err = invoke("-c", str(configured), "resume", "--all")
    with sqlite3.connect(path) as db:
        state = db.execute("SELECT state FROM nodes WHERE name = 'pexip-mgr'").fetchone()[0]
    assert code == 4 and state == "awaiting_approval", (code, state, err)
    assert event_count(path) == before
    why = f"events {forged}..{forged} come after the last signed checkpoint" if drop_signature else "head_signature"
    assert why in err, err
    code, out, err = invoke("-c", str(configured), "journal", "verify")
    if drop_signature:  # the chain holds, but nothing proves the tail: verify and acting agree (exit 4)
        assert code == 4 and f"head_signature: missing although the journal has {forged} events" in err, out + err
        assert f"nothing proves events {forged}..{forged}" in err, err
    else:
        assert code == 4 and f"signs head seq {forged - 1}" in err, err


@pytest.mark.parametrize(("meta", "ok"), [("new", True), ("old", True), ("other", False)])
def test_the_definition_hash_may_lag_its_change_event_by_a_crash_but_not_be_invented(
    tmp_path: Path, meta: str, ok: bool
) -> None:
    """`definition_changed` is journaled before the meta value moves: a crash between leaves the old value, which still
    verifies; any other value fails verify."""
    with Journal.open(tmp_path / "j.sqlite") as j:
        j.set_meta("definition_hash", "old")
        j.record(node=None, kind=kinds.DEFINITION_RECORDED, payload={"definition_hash": "old"})
        j.record(node=None, kind=kinds.DEFINITION_CHANGED, payload={"from": "old", "to": "new"})
        j.set_meta("definition_hash", meta)
        report = j.verify(chain_only=True)
    assert report.ok is ok, report.problems
    assert ok or any("meta definition_hash 'other' differs" in p for p in report.problems)
