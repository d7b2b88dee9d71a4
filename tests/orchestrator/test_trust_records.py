"""Issue #7: what the journal's files and records hold: private files, the start record, checkpoints, and the
external witness (a real rsyslog)."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal import Journal, generate_signing_key
from orchestrator import api
from tests.adapters._rsyslog import Rsyslog, running_rsyslog
from tests.orchestrator.cli_helpers import (
    event_count,
    finished_simulation,
    invoke,
    sim_config,
    sim_env,
)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return sim_env(tmp_path, monkeypatch)


@pytest.fixture
def simulated(here: Path) -> tuple[Path, Path]:
    """A finished two-node simulation, and the auditor's copy of its public key (kept outside its directory)."""
    return finished_simulation(here)


# --- finding 12 and 14: files ----------------------------------------------------------------------


def test_journal_checkpoints_world_and_exports_are_private(simulated: tuple[Path, Path], here: Path) -> None:
    """The journal, its checkpoints, the world and an export are created 0600."""
    journal, _ = simulated
    export = here / "audit.jsonl"
    assert invoke("--journal", str(journal), "journal", "export", "-o", str(export))[0] == 0
    for path in (journal, Path(f"{journal}.checkpoints"), here / "sim" / "w.sqlite", export):
        assert path.stat().st_mode & 0o777 == 0o600, path


def _another_group() -> grp.struct_group | None:
    """A group this user may give files to, other than its own primary group."""
    mine = {os.getegid(), *os.getgroups()}
    for group in grp.getgrall():
        if group.gr_gid != os.getegid() and (os.geteuid() == 0 or group.gr_gid in mine):
            return group
    return None


def test_a_configured_journal_group_reads_the_journal_checkpoints_and_exports(here: Path) -> None:
    """journal.group: the journal, its checkpoint list and an export are 0640 and owned by that group."""
    group = _another_group()
    if group is None:
        pytest.skip("this user belongs to no group but its own: nothing to give the files to")
    config = sim_config(here)
    config.write_text(config.read_text().replace("[journal]\n", f'[journal]\ngroup = "{group.gr_name}"\n', 1))
    assert invoke("-c", str(config), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    journal = here / "orchestrator.journal.sqlite"
    export = here / "audit.jsonl"
    assert invoke("-c", str(config), "journal", "export", "-o", str(export))[0] == 0
    for path in (journal, Path(f"{journal}.checkpoints"), export):
        st = path.stat()
        assert (st.st_mode & 0o777, st.st_gid) == (0o640, group.gr_gid), path


def test_a_journal_group_that_does_not_exist_is_bad_input_and_nothing_is_created(here: Path) -> None:
    """A group missing on this host: exit 2 naming journal.group, before the journal or the world exist."""
    config = sim_config(here)
    config.write_text(config.read_text().replace("[journal]\n", '[journal]\ngroup = "no-such-group-x"\n', 1))
    code, _, err = invoke("-c", str(config), "run", "pexip-mgr", "--until", "deployed")
    assert code == 2 and "journal.group" in err and "no group 'no-such-group-x'" in err, err
    assert not list(here.glob("*.sqlite*"))


def test_a_failed_export_keeps_the_previous_file(
    simulated: tuple[Path, Path], here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export that dies half-way (the stream breaks) leaves the previous good export whole."""
    journal, _ = simulated
    export = here / "audit.jsonl"
    assert invoke("--journal", str(journal), "journal", "export", "-o", str(export))[0] == 0
    good = export.read_bytes()

    def broken(self: Journal, out: object, **_: object) -> int:  # a stand-in for a kill mid-write
        out.write("half a line")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(Journal, "export", broken)
    with pytest.raises(OSError):
        invoke("--journal", str(journal), "journal", "export", "-o", str(export))
    assert export.read_bytes() == good


# --- the start record -------------------------------------------------------------------------------


def test_every_start_journals_policy_configuration_command_user_and_version(here: Path) -> None:
    """run writes one run_started with the configuration's SHA-256, the command line, the user and the version."""
    config = sim_config(here)
    assert invoke("-c", str(config), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    with Journal.open(here / "orchestrator.journal.sqlite", readonly=True) as journal:
        starts = [e for e in journal.events() if e.kind == "run_started"]
    assert len(starts) == 1
    payload = starts[0].payload
    assert payload["command"] == "run" and payload["user"]
    assert payload["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert payload["version"] and isinstance(payload["argv"], list) and payload["packaged_policy_sha256"]


def test_the_start_record_lists_the_policy_deviations_and_the_hashes_of_what_was_read(here: Path) -> None:
    """A recommended value changed in [policy] is in run_started: the guide's value, the value used, the words."""
    config = sim_config(here)
    text = config.read_text().replace("[policy]\n", "[policy]\nglobal_settings.management_qos = 18\n", 1)
    config.write_text(text)
    assert invoke("-c", str(config), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    with Journal.open(here / "orchestrator.journal.sqlite", readonly=True) as journal:
        (start,) = [e.payload for e in journal.events() if e.kind == "run_started"]
    (deviation,) = start["policy_deviations"]
    assert (deviation["field"], deviation["guide"], deviation["used"]) == ("global_settings.management_qos", 16, 18)
    assert "We recommend a value of 16" in deviation["guide_words"]
    assert start["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert start["policy_sha256"] == start["packaged_policy_sha256"]  # no site policy file: the packaged one


def test_a_checkpoint_every_n_transitions(here: Path) -> None:
    """With journal.checkpoint_every = 2 a run signs every 2 transitions and at the end."""
    config = sim_config(here)
    config.write_text(config.read_text() + "\n[policy.journal]\ncheckpoint_every = 2\n")
    assert invoke("-c", str(config), "run", "pexip-mgr", "--until", "reserved")[0] == 0
    lines = Path("orchestrator.journal.sqlite.checkpoints").read_text().splitlines()
    seqs = [json.loads(line)["seq"] for line in lines]
    assert len(seqs) >= 4 and seqs == sorted(set(seqs))
    assert seqs[-1] == event_count(here / "orchestrator.journal.sqlite")  # the end of the run is signed
    code, out, err = invoke(
        "-c", str(config), "journal", "verify", "--checkpoints", "orchestrator.journal.sqlite.checkpoints"
    )
    assert code == 0 and "VERIFIED" in out and "journal.signing_key" not in out, out + err


# --- the external witness: a real rsyslog -------------------------------------------------------------


@pytest.fixture
def rsyslog(here: Path) -> Iterator[Rsyslog]:
    with running_rsyslog(here / "rsyslog") as server:
        yield server


def _witnessed_config(here: Path, name: str, rsyslog: Rsyslog, key: Path) -> Path:
    config = sim_config(here) if not (here / "orchestrator.toml").exists() else here / "orchestrator.toml"
    text = re.sub(
        r"(\[\[network\.syslog_servers\]\][^\[]*)",
        f'[[network.syslog_servers]]\naddress = "127.0.0.1"\nport = {rsyslog.tcp_port}\ntransport = "tcp"\n\n',
        config.read_text(),
        count=1,
    )
    text += f'signing_key = "file:{key}"\nsyslog = "real"\n'  # the file ends in its [journal] table
    path = here / f"{name}.toml"
    path.write_text(text.replace('path = "orchestrator.journal.sqlite"', f'path = "{name}.journal.sqlite"'))
    return path


def test_rsyslog_keeps_the_checkpoints_and_catches_a_rewrite_signed_with_the_real_key(
    here: Path, rsyslog: Rsyslog
) -> None:
    """The syslog server's copy verifies the journal; a rewritten history, re-signed even with the stolen key, fails
    against it."""
    key = generate_signing_key(here / "private")
    honest = _witnessed_config(here, "honest", rsyslog, key)
    assert invoke("-c", str(honest), "run", "pexip-mgr", "--until", "reserved")[0] == 0
    # Every checkpoint the journal kept, waited for (it waited 5 s for 2 lines, and took the 1 it had).
    kept = (here / "honest.journal.sqlite.checkpoints").read_text().splitlines()
    lines = rsyslog.lines(len(kept))
    assert kept and len(lines) == len(kept) and all(" orchestrator - checkpoint - {" in line for line in lines)
    copy = here / "witness.log"
    shutil.copy(rsyslog.received, copy)
    pem = here / "auditor.pem"
    pem.write_text(api.public_key(api.SessionSettings(config=honest))[0])
    code, out, err = invoke(
        "-c", str(honest), "journal", "verify", "--public-key", str(pem), "--checkpoints", str(copy)
    )
    assert code == 0 and "VERIFIED" in out, out + err
    # The attacker holds the key and rebuilds a shorter history in its place, re-signed.
    forged = _witnessed_config(here, "forged", rsyslog, key)
    assert invoke("-c", str(forged), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    for suffix in ("", ".checkpoints"):
        shutil.copy(f"forged.journal.sqlite{suffix}", f"honest.journal.sqlite{suffix}")
    for suffix in ("-wal", "-shm"):
        Path(f"honest.journal.sqlite{suffix}").unlink(missing_ok=True)
    assert invoke("-c", str(honest), "journal", "verify", "--public-key", str(pem))[0] == 0  # fooled alone
    code, _, err = invoke("-c", str(honest), "journal", "verify", "--public-key", str(pem), "--checkpoints", str(copy))
    assert code == 4 and ("rewritten" in err or "truncated" in err), err
    assert json.loads(lines[0].split(" - checkpoint - ", 1)[1])["seq"] >= 1
