"""Issue #7, as an attacker and a careless operator would try it: the journal's signing key, verify before acting, one
deployment per journal, private files."""

from __future__ import annotations

import dataclasses
import grp
import hashlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from config.errors import ConfigError
from config.load import load_deployment
from config.secrets import Secret
from journal import Journal, generate_signing_key
from orchestrator import api
from orchestrator._trust import generated_key_path, signer_for
from orchestrator.cli import cli
from tests.adapters._rsyslog import Rsyslog, running_rsyslog
from tests.orchestrator.test_cli import SECRETS, _sim_config


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_JOURNAL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _simulate(folder: Path, *extra: str) -> tuple[int, str, str]:
    folder.mkdir(exist_ok=True)
    return _invoke(
        "--journal", str(folder / "j.sqlite"), "simulate", "--nodes", "2", "--world", str(folder / "w.sqlite"), *extra
    )


def _public_key(journal: Path, out: Path) -> Path:
    code, pem, err = _invoke("--journal", str(journal), "journal", "public-key")
    assert code == 0 and pem.startswith("-----BEGIN PUBLIC KEY-----"), err
    out.write_text(pem)
    return out


def _verify(journal: Path, *extra: str) -> tuple[int, str, str]:
    return _invoke("--journal", str(journal), "journal", "verify", *extra)


def _events(journal: Path) -> int:
    with sqlite3.connect(journal) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])


def _digest(path: Path) -> dict[str, str]:
    # -shm is SQLite's shared-memory index, which every reader maps, and a WAL reader may leave an
    # empty -wal: neither is the journal's content.
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.parent.glob(f"{path.name}*"))
        if p.is_file() and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and p.stat().st_size == 0)
    }


@pytest.fixture
def simulated(here: Path) -> Iterator[tuple[Path, Path]]:
    """A finished two-node simulation, and the auditor's copy of its public key (kept outside its directory)."""
    code, out, err = _simulate(here / "sim")
    assert code == 0, out + err
    journal = here / "sim" / "j.sqlite"
    yield journal, _public_key(journal, here / "auditor.pem")


# --- finding 3: history rewritten by whoever can write the journal's directory ------------------


def test_a_simulation_keeps_its_key_outside_the_journals_directory_and_verifies(simulated: tuple[Path, Path]) -> None:
    """The generated key is in a private directory that is not the journal's (nor below it); the journal VERIFIES."""
    journal, pem = simulated
    key = generated_key_path(journal)
    assert key.is_file() and not key.resolve().is_relative_to(journal.parent.resolve())
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700
    assert not list(journal.parent.glob("*.key")) and not list(journal.parent.glob("*.pem"))
    code, out, err = _verify(journal, "--public-key", str(pem))
    assert code == 0 and "VERIFIED" in out, out + err


def test_a_rewrite_resealed_with_the_attackers_own_key_fails(simulated: tuple[Path, Path], here: Path) -> None:
    """A whole journal rebuilt and signed with another key, put in place of the real one, fails against the auditor's
    key."""
    journal, pem = simulated
    code, _, _ = _simulate(here / "forge", "--faults", "permanent=security_wizard@pexip-mgr")
    assert code == 1
    forged = here / "forge" / "j.sqlite"
    for suffix in ("", ".checkpoints"):
        shutil.copy(f"{forged}{suffix}", f"{journal}{suffix}")
    for suffix in ("-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    code, _, err = _verify(journal, "--public-key", str(pem))
    assert code == 4 and "signature does not match the trusted public key" in err


def test_deleting_the_key_gives_unverified_never_ok(simulated: tuple[Path, Path]) -> None:
    """Without the key (deleted) and without --public-key, verify says UNVERIFIED and exits 4."""
    journal, _ = simulated
    generated_key_path(journal).unlink()
    code, out, err = _verify(journal)
    assert code == 4 and "UNVERIFIED" in err, out + err


# --- finding 4: forged exports --------------------------------------------------------------------


def test_a_forged_export_fails_and_an_unsigned_one_is_unverified(simulated: tuple[Path, Path], here: Path) -> None:
    """An export signed with another key fails against the auditor's key; with no key at all it is UNVERIFIED (exit
    4)."""
    journal, pem = simulated
    real = here / "real.jsonl"
    assert _invoke("--journal", str(journal), "journal", "export", "-o", str(real))[0] == 0
    code, out, _ = _invoke("--journal", str(journal), "journal", "verify", str(real), "--public-key", str(pem))
    assert code == 0 and "VERIFIED" in out
    assert _simulate(here / "forge")[0] == 0
    forged = here / "forged.jsonl"
    assert _invoke("--journal", str(here / "forge" / "j.sqlite"), "journal", "export", "-o", str(forged))[0] == 0
    assert _invoke("--journal", str(journal), "journal", "verify", str(forged), "--public-key", str(pem))[0] == 4
    generated_key_path(journal).unlink()
    code, _, err = _invoke("--journal", str(journal), "journal", "verify", str(real))
    assert code == 4 and "UNVERIFIED" in err


# --- finding 5: acting on a journal that fails verification --------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["resume", "--all"],  # the engine would drive on top of it
        ["approve", "pexip-mgr", "security_wizard", "--by", "alice"],  # a gate opened on a forged history
        ["maintenance", "pexip-mgr", "on", "--by", "alice"],
        ["simulate", "--nodes", "2", "--world", "w.sqlite"],
    ],
)
def test_commands_refuse_a_journal_that_fails_verification(here: Path, command: list[str]) -> None:
    """After a node row is edited (the security wizard "skipped"), each acting command exits 4 and writes nothing."""
    assert _simulate(here / "sim", "--faults", "permanent=security_wizard@pexip-mgr")[0] == 1
    journal = here / "sim" / "j.sqlite"
    with sqlite3.connect(journal) as db:
        db.execute("UPDATE nodes SET step = 'global_settings' WHERE name = 'pexip-mgr'")
    before = _events(journal)
    args = [a if a != "w.sqlite" else str(here / "sim" / "w.sqlite") for a in command]
    code, _, err = _invoke("--journal", str(journal), *args)
    assert code == 4, err
    assert "refusing to" in err and "step" in err
    assert _events(journal) == before


def test_a_journal_killed_before_its_first_checkpoint_is_adopted(here: Path) -> None:
    """A journal holding only its opening records, never signed (a crash right after them), is signed and used."""
    (here / "sim").mkdir()
    with api.open_journal(here / "sim" / "j.sqlite"):
        pass  # definition_recorded, and nothing else
    code, out, err = _simulate(here / "sim")
    assert code == 0, out + err
    assert _verify(here / "sim" / "j.sqlite")[0] == 0


# --- finding 8: one deployment per journal ---------------------------------------------------------


def test_resume_all_on_an_empty_journal_has_nothing_to_resume(here: Path) -> None:
    """`resume --all` on a journal of no deployment says so (exit 2) and writes nothing."""
    config = _sim_config(here)
    Journal.open(here / "orchestrator.journal.sqlite").close()
    code, _, err = _invoke("-c", str(config), "resume", "--all")
    assert code == 2 and "nothing to resume" in err
    assert _events(here / "orchestrator.journal.sqlite") == 0


def test_another_deployments_configuration_is_refused(here: Path) -> None:
    """A second deployment's configuration on the first one's journal exits 2 and adds nothing."""
    config = _sim_config(here)
    assert _invoke("-c", str(config), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    before = _events(here / "orchestrator.journal.sqlite")
    other = here / "other.toml"
    text = config.read_text()
    name = re.search(r'^name = "([^"]*)"', text, flags=re.M)
    assert name is not None
    other.write_text(text.replace(name.group(0), 'name = "another-deployment"', 1))
    code, _, err = _invoke(
        "-c", str(other), "--journal", "orchestrator.journal.sqlite", "run", "pexip-mgr", "--until", "deployed"
    )
    assert code == 2 and "belongs to deployment" in err
    code, _, err = _invoke(
        "-c",
        str(other),
        "--journal",
        "orchestrator.journal.sqlite",
        "approve",
        "pexip-mgr",
        "security_wizard",
        "--by",
        "alice",
    )
    assert code == 2 and "belongs to deployment" in err
    assert _events(here / "orchestrator.journal.sqlite") == before


def test_a_file_that_is_not_a_journal_is_refused_unchanged(simulated: tuple[Path, Path], here: Path) -> None:
    """`--journal` on the simulated world's SQLite file exits 2 and leaves it byte for byte as it was."""
    world = here / "sim" / "w.sqlite"
    before = world.read_bytes()
    for args in (["status"], ["journal", "verify"], ["resume", "--all"], ["simulate", "--world", str(here / "x")]):
        code, _, err = _invoke("--journal", str(world), *args)
        assert code == 2, (args, err)
    assert world.read_bytes() == before


def test_read_only_commands_never_create_or_alter_a_journal(simulated: tuple[Path, Path], here: Path) -> None:
    """status, verify, export and public-key leave the journal's files as they were; on a missing one they create
    nothing."""
    journal, pem = simulated
    before = _digest(journal)
    assert _invoke("--journal", str(journal), "status")[0] == 0
    assert _verify(journal, "--public-key", str(pem))[0] == 0
    assert _invoke("--journal", str(journal), "journal", "export", "-o", str(here / "e.jsonl"))[0] == 0
    assert _invoke("--journal", str(journal), "journal", "public-key")[0] == 0
    assert _digest(journal) == before
    missing = here / "none.sqlite"
    for args in (["status"], ["journal", "verify"], ["journal", "export"]):
        assert _invoke("--journal", str(missing), *args)[0] == 2
    assert not list(here.glob("none.sqlite*"))


# --- finding 12 and 14: files ----------------------------------------------------------------------


def test_journal_checkpoints_world_and_exports_are_private(simulated: tuple[Path, Path], here: Path) -> None:
    """The journal, its checkpoints, the world and an export are created 0600."""
    journal, _ = simulated
    export = here / "audit.jsonl"
    assert _invoke("--journal", str(journal), "journal", "export", "-o", str(export))[0] == 0
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
    config = _sim_config(here)
    config.write_text(config.read_text().replace("[journal]\n", f'[journal]\ngroup = "{group.gr_name}"\n', 1))
    assert _invoke("-c", str(config), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    journal = here / "orchestrator.journal.sqlite"
    export = here / "audit.jsonl"
    assert _invoke("-c", str(config), "journal", "export", "-o", str(export))[0] == 0
    for path in (journal, Path(f"{journal}.checkpoints"), export):
        st = path.stat()
        assert (st.st_mode & 0o777, st.st_gid) == (0o640, group.gr_gid), path


def test_a_journal_group_that_does_not_exist_is_bad_input_and_nothing_is_created(here: Path) -> None:
    """A group missing on this host: exit 2 naming journal.group, before the journal or the world exist."""
    config = _sim_config(here)
    config.write_text(config.read_text().replace("[journal]\n", '[journal]\ngroup = "no-such-group-x"\n', 1))
    code, _, err = _invoke("-c", str(config), "run", "pexip-mgr", "--until", "deployed")
    assert code == 2 and "journal.group" in err and "no group 'no-such-group-x'" in err, err
    assert not list(here.glob("*.sqlite*"))


def test_a_failed_export_keeps_the_previous_file(
    simulated: tuple[Path, Path], here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export that dies half-way (the stream breaks) leaves the previous good export whole."""
    journal, _ = simulated
    export = here / "audit.jsonl"
    assert _invoke("--journal", str(journal), "journal", "export", "-o", str(export))[0] == 0
    good = export.read_bytes()

    def broken(self: Journal, out: object, **_: object) -> int:  # a stand-in for a kill mid-write
        out.write("half a line")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(Journal, "export", broken)
    with pytest.raises(OSError):
        _invoke("--journal", str(journal), "journal", "export", "-o", str(export))
    assert export.read_bytes() == good


# --- the start record -------------------------------------------------------------------------------


def test_every_start_journals_policy_configuration_command_user_and_version(here: Path) -> None:
    """run writes one run_started with the configuration's SHA-256, the command line, the user and the version."""
    config = _sim_config(here)
    assert _invoke("-c", str(config), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    with Journal.open(here / "orchestrator.journal.sqlite", readonly=True) as journal:
        starts = [e for e in journal.events() if e.kind == "run_started"]
    assert len(starts) == 1
    payload = starts[0].payload
    assert payload["command"] == "run" and payload["user"]
    assert payload["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert payload["version"] and isinstance(payload["argv"], list) and payload["packaged_policy_sha256"]


def test_the_start_record_lists_the_policy_deviations_and_the_hashes_of_what_was_read(here: Path) -> None:
    """A recommended value changed in [policy] is in run_started: the guide's value, the value used, the words."""
    config = _sim_config(here)
    text = config.read_text().replace("[policy]\n", "[policy]\nglobal_settings.management_qos = 18\n", 1)
    config.write_text(text)
    assert _invoke("-c", str(config), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    with Journal.open(here / "orchestrator.journal.sqlite", readonly=True) as journal:
        (start,) = [e.payload for e in journal.events() if e.kind == "run_started"]
    (deviation,) = start["policy_deviations"]
    assert (deviation["field"], deviation["guide"], deviation["used"]) == ("global_settings.management_qos", 16, 18)
    assert "We recommend a value of 16" in deviation["guide_words"]
    assert start["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert start["policy_sha256"] == start["packaged_policy_sha256"]  # no site policy file: the packaged one


def test_a_checkpoint_every_n_transitions(here: Path) -> None:
    """With journal.checkpoint_every = 2 a run signs every 2 transitions and at the end."""
    config = _sim_config(here)
    config.write_text(config.read_text() + "\n[policy.journal]\ncheckpoint_every = 2\n")
    assert _invoke("-c", str(config), "run", "pexip-mgr", "--until", "reserved")[0] == 0
    lines = Path("orchestrator.journal.sqlite.checkpoints").read_text().splitlines()
    seqs = [json.loads(line)["seq"] for line in lines]
    assert len(seqs) >= 4 and seqs == sorted(set(seqs))
    assert seqs[-1] == _events(here / "orchestrator.journal.sqlite")  # the end of the run is signed
    code, out, err = _invoke(
        "-c", str(config), "journal", "verify", "--checkpoints", "orchestrator.journal.sqlite.checkpoints"
    )
    assert code == 0 and "VERIFIED" in out and "journal.signing_key" not in out, out + err


# --- real mode: where the key may be -----------------------------------------------------------------


@pytest.fixture
def real(here: Path) -> object:
    """The simulated deployment with vCenter in real mode (what the key rules are about)."""
    deployment = load_deployment(_sim_config(here), check_secrets=False)
    return dataclasses.replace(deployment, vcenter=dataclasses.replace(deployment.vcenter, mode="real"))


def _with_key(deployment: object, path: Path) -> object:
    journal = dataclasses.replace(deployment.journal, signing_key=Secret(f"file:{path}"))  # type: ignore[attr-defined]
    return dataclasses.replace(deployment, journal=journal)  # type: ignore[type-var]


def test_real_mode_refuses_a_missing_key_one_beside_the_journal_or_one_others_can_read(
    real: object, here: Path
) -> None:
    """Each is exit 2 naming journal.signing_key and the fix; a private key elsewhere is accepted."""
    journal = here / "data" / "j.sqlite"
    journal.parent.mkdir()
    with pytest.raises(ConfigError, match="journal.signing_key.*required when any system is real"):
        signer_for(real, journal)  # type: ignore[arg-type]
    beside = generate_signing_key(journal.parent / "keys")
    with pytest.raises(ConfigError, match="in the journal's directory"):
        signer_for(_with_key(real, beside), journal)  # type: ignore[arg-type]
    elsewhere = generate_signing_key(here / "private")
    elsewhere.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by group or others.*chmod 600"):
        signer_for(_with_key(real, elsewhere), journal)  # type: ignore[arg-type]
    elsewhere.chmod(0o600)
    trust = signer_for(_with_key(real, elsewhere), journal)  # type: ignore[arg-type]
    assert trust is not None and "journal.signing_key" in trust.source
    assert not journal.exists() and not generated_key_path(journal).exists()


# --- the external witness: a real rsyslog -------------------------------------------------------------


@pytest.fixture
def rsyslog(here: Path) -> Iterator[Rsyslog]:
    with running_rsyslog(here / "rsyslog") as server:
        yield server


def _witnessed_config(here: Path, name: str, rsyslog: Rsyslog, key: Path) -> Path:
    config = _sim_config(here) if not (here / "orchestrator.toml").exists() else here / "orchestrator.toml"
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
    assert _invoke("-c", str(honest), "run", "pexip-mgr", "--until", "reserved")[0] == 0
    lines = rsyslog.lines(2)
    assert lines and all(" orchestrator - checkpoint - {" in line for line in lines)
    copy = here / "witness.log"
    shutil.copy(rsyslog.received, copy)
    pem = here / "auditor.pem"
    pem.write_text(api.public_key(api.SessionSettings(config=honest))[0])
    code, out, err = _invoke(
        "-c", str(honest), "journal", "verify", "--public-key", str(pem), "--checkpoints", str(copy)
    )
    assert code == 0 and "VERIFIED" in out, out + err
    # The attacker holds the key and rebuilds a shorter history in its place, re-signed.
    forged = _witnessed_config(here, "forged", rsyslog, key)
    assert _invoke("-c", str(forged), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    for suffix in ("", ".checkpoints"):
        shutil.copy(f"forged.journal.sqlite{suffix}", f"honest.journal.sqlite{suffix}")
    for suffix in ("-wal", "-shm"):
        Path(f"honest.journal.sqlite{suffix}").unlink(missing_ok=True)
    assert _invoke("-c", str(honest), "journal", "verify", "--public-key", str(pem))[0] == 0  # fooled alone
    code, _, err = _invoke("-c", str(honest), "journal", "verify", "--public-key", str(pem), "--checkpoints", str(copy))
    assert code == 4 and ("rewritten" in err or "truncated" in err), err
    assert json.loads(lines[0].split(" - checkpoint - ", 1)[1])["seq"] >= 1


# --- item 7 (the journal's part): nothing created before the checks passed ----------------------------


def test_a_real_system_misconfigured_creates_no_journal_key_or_world(here: Path) -> None:
    """`mode = "real"` for the console without its host keys exits 2 before the journal, its key or the world exist."""
    config = _sim_config(here)
    text = config.read_text()
    config.write_text(re.sub(r'(\[console\][^\[]*?)mode = "sim"', r'\1mode = "real"', text, count=1))
    code, _, err = _invoke("-c", str(config), "run")
    # The configuration's report comes first; the key is checked (still before anything is written) once it is clean.
    assert code == 2 and "console.known_hosts" in err, err
    assert not list(here.glob("*.sqlite*")) and not generated_key_path(here / "orchestrator.journal.sqlite").exists()
