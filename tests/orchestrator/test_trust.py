"""Issue #7, as an attacker and a careless operator would try it: the journal's signing key, verify before acting, one
deployment per journal, where a real deployment's key may be."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.load import load_deployment
from config.secrets import Secret
from journal import Journal, generate_signing_key
from orchestrator import api
from orchestrator._trust import generated_key_path, signer_for
from tests.orchestrator.cli_helpers import (
    event_count,
    finished_simulation,
    invoke,
    sim_config,
    sim_env,
    simulate_two,
)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return sim_env(tmp_path, monkeypatch)


def _verify(journal: Path, *extra: str) -> tuple[int, str, str]:
    return invoke("--journal", str(journal), "journal", "verify", *extra)


def _digest(path: Path) -> dict[str, str]:
    # -shm is SQLite's shared-memory index, which every reader maps, and a WAL reader may leave an
    # empty -wal: neither is the journal's content.
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.parent.glob(f"{path.name}*"))
        if p.is_file() and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and p.stat().st_size == 0)
    }


@pytest.fixture
def simulated(here: Path) -> tuple[Path, Path]:
    """A finished two-node simulation, and the auditor's copy of its public key (kept outside its directory)."""
    return finished_simulation(here)


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
    code, _, _ = simulate_two(here / "forge", "--faults", "permanent=security_wizard@pexip-mgr")
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
    assert invoke("--journal", str(journal), "journal", "export", "-o", str(real))[0] == 0
    code, out, _ = invoke("--journal", str(journal), "journal", "verify", str(real), "--public-key", str(pem))
    assert code == 0 and "VERIFIED" in out
    assert simulate_two(here / "forge")[0] == 0
    forged = here / "forged.jsonl"
    assert invoke("--journal", str(here / "forge" / "j.sqlite"), "journal", "export", "-o", str(forged))[0] == 0
    assert invoke("--journal", str(journal), "journal", "verify", str(forged), "--public-key", str(pem))[0] == 4
    generated_key_path(journal).unlink()
    code, _, err = invoke("--journal", str(journal), "journal", "verify", str(real))
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
    assert simulate_two(here / "sim", "--faults", "permanent=security_wizard@pexip-mgr")[0] == 1
    journal = here / "sim" / "j.sqlite"
    with sqlite3.connect(journal) as db:
        db.execute("UPDATE nodes SET step = 'global_settings' WHERE name = 'pexip-mgr'")
    before = event_count(journal)
    args = [a if a != "w.sqlite" else str(here / "sim" / "w.sqlite") for a in command]
    code, _, err = invoke("--journal", str(journal), *args)
    assert code == 4, err
    assert "refusing to" in err and "step" in err
    assert event_count(journal) == before


def test_a_journal_killed_before_its_first_checkpoint_is_adopted(here: Path) -> None:
    """A journal holding only its opening records, never signed (a crash right after them), is signed and used."""
    (here / "sim").mkdir()
    with api.open_journal(here / "sim" / "j.sqlite"):
        pass  # definition_recorded, and nothing else
    code, out, err = simulate_two(here / "sim")
    assert code == 0, out + err
    assert _verify(here / "sim" / "j.sqlite")[0] == 0


# --- finding 8: one deployment per journal ---------------------------------------------------------


def test_resume_all_on_an_empty_journal_has_nothing_to_resume(here: Path) -> None:
    """`resume --all` on a journal of no deployment says so (exit 2) and writes nothing."""
    config = sim_config(here)
    Journal.open(here / "orchestrator.journal.sqlite").close()
    code, _, err = invoke("-c", str(config), "resume", "--all")
    assert code == 2 and "nothing to resume" in err
    assert event_count(here / "orchestrator.journal.sqlite") == 0


def test_another_deployments_configuration_is_refused(here: Path) -> None:
    """A second deployment's configuration on the first one's journal exits 2 and adds nothing."""
    config = sim_config(here)
    assert invoke("-c", str(config), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    before = event_count(here / "orchestrator.journal.sqlite")
    other = here / "other.toml"
    text = config.read_text()
    name = re.search(r'^name = "([^"]*)"', text, flags=re.M)
    assert name is not None
    other.write_text(text.replace(name.group(0), 'name = "another-deployment"', 1))
    code, _, err = invoke(
        "-c", str(other), "--journal", "orchestrator.journal.sqlite", "run", "pexip-mgr", "--until", "deployed"
    )
    assert code == 2 and "belongs to deployment" in err
    code, _, err = invoke(
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
    assert event_count(here / "orchestrator.journal.sqlite") == before


def test_a_file_that_is_not_a_journal_is_refused_unchanged(simulated: tuple[Path, Path], here: Path) -> None:
    """`--journal` on the simulated world's SQLite file exits 2 and leaves it byte for byte as it was."""
    world = here / "sim" / "w.sqlite"
    before = world.read_bytes()
    for args in (["status"], ["journal", "verify"], ["resume", "--all"], ["simulate", "--world", str(here / "x")]):
        code, _, err = invoke("--journal", str(world), *args)
        assert code == 2, (args, err)
    assert world.read_bytes() == before


def test_read_only_commands_never_create_or_alter_a_journal(simulated: tuple[Path, Path], here: Path) -> None:
    """status, verify, export and public-key leave the journal's files as they were; on a missing one they create
    nothing."""
    journal, pem = simulated
    before = _digest(journal)
    assert invoke("--journal", str(journal), "status")[0] == 0
    assert _verify(journal, "--public-key", str(pem))[0] == 0
    assert invoke("--journal", str(journal), "journal", "export", "-o", str(here / "e.jsonl"))[0] == 0
    assert invoke("--journal", str(journal), "journal", "public-key")[0] == 0
    assert _digest(journal) == before
    missing = here / "none.sqlite"
    for args in (["status"], ["journal", "verify"], ["journal", "export"]):
        assert invoke("--journal", str(missing), *args)[0] == 2
    assert not list(here.glob("none.sqlite*"))


# --- real mode: where the key may be -----------------------------------------------------------------


@pytest.fixture
def real(here: Path) -> object:
    """The simulated deployment with vCenter in real mode (what the key rules are about)."""
    deployment = load_deployment(sim_config(here), check_secrets=False)
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


# --- item 7 (the journal's part): nothing created before the checks passed ----------------------------


def test_a_real_system_misconfigured_creates_no_journal_key_or_world(here: Path) -> None:
    """`mode = "real"` for the console without its host keys exits 2 before the journal, its key or the world exist."""
    config = sim_config(here)
    text = config.read_text()
    config.write_text(re.sub(r'(\[console\][^\[]*?)mode = "sim"', r'\1mode = "real"', text, count=1))
    code, _, err = invoke("-c", str(config), "run")
    # The configuration's report comes first; the key is checked (still before anything is written) once it is clean.
    assert code == 2 and "console.known_hosts" in err, err
    assert not list(here.glob("*.sqlite*")) and not generated_key_path(here / "orchestrator.journal.sqlite").exists()
