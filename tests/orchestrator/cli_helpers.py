"""Helpers of the command-line tests: the shipped example with every system simulated, its secrets in the
environment, and the CLI invoked in-process (CliRunner). One copy, so that every test runs the same example."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "example.toml"

SECRETS = {
    "VCENTER_PASSWORD": "vc-Secret-7f3a91",
    "BIOS_PASSWORD": "bios-Secret-2c8e44",
    "PEXIP_ADMIN_PASSWORD": "admin-Secret-9d1b07",
    "NTP_KEY_1": "ntp1-Secret-55aa01",
    "NTP_KEY_2": "ntp2-Secret-66bb02",
    "SNMP_AUTH_PASSWORD": "snmpauth-Secret-77cc",
    "SNMP_PRIV_PASSWORD": "snmppriv-Secret-88dd",
    "LDAP_BIND_PASSWORD": "bind-Secret-99ee03",
    "LDAP_VERIFY_PASSWORD": "verify-Secret-aaff04",
    "PEXIP_BOOTSTRAP_KEY": "Ym9vdHN0cmFwLVNlY3JldC0zMmJ5dGVzLWxvbmctLS0=",  # 32 bytes, base64
    "PEXIP_CONSOLE_PASSWORD": "console-Passw0rd-1",
}
CLIENT_KEY = "clientkey-Secret-bb1105"


def sim_config(tmp: Path) -> Path:
    """The example deployment with every system simulated, secrets from env and a file."""
    text = EXAMPLE.read_text()
    text = re.sub(r'^mode = "real"', 'mode = "sim"', text, flags=re.M)
    text = re.sub(r'^mode = "manual"', 'mode = "sim"', text, flags=re.M)
    text = re.sub(r"^signing_key = .*\n", "", text, flags=re.M)  # a simulation makes its own journal key
    (tmp / "certs").mkdir()
    (tmp / "certs" / "orchestrator-admin.key").write_text(CLIENT_KEY + "\n")
    path = tmp / "orchestrator.toml"
    path.write_text(text)
    return path


def sim_env(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp`` made the working directory, the example's secrets set, and no configuration or journal
    named by the caller's environment (which would otherwise decide what a test without -c reads)."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_JOURNAL", raising=False)
    monkeypatch.chdir(tmp)
    return tmp


def invoke(*args: str) -> tuple[int, str, str]:
    """``orchestrator ARGS`` in-process: exit code, stdout, stderr; an exception escapes as itself."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def simulate_two(folder: Path, *extra: str) -> tuple[int, str, str]:
    """``orchestrator simulate --nodes 2`` with its journal (``j.sqlite``) and world (``w.sqlite``) in ``folder``."""
    folder.mkdir(exist_ok=True)
    return invoke(
        "--journal", str(folder / "j.sqlite"), "simulate", "--nodes", "2", "--world", str(folder / "w.sqlite"), *extra
    )


def public_key(journal: Path, out: Path) -> Path:
    """The auditor's copy of the journal's public key (``journal public-key``), written to ``out``."""
    code, pem, err = invoke("--journal", str(journal), "journal", "public-key")
    assert code == 0 and pem.startswith("-----BEGIN PUBLIC KEY-----"), err
    out.write_text(pem)
    return out


def event_count(journal: Path) -> int:
    """How many events the journal holds, read with plain SQLite (no code of ours in the way)."""
    with sqlite3.connect(journal) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])


def finished_simulation(here: Path) -> tuple[Path, Path]:
    """A finished two-node simulation in ``here/sim``: its journal, and the auditor's copy of its public key
    (``here/auditor.pem``, outside the journal's directory)."""
    code, out, err = simulate_two(here / "sim")
    assert code == 0, out + err
    journal = here / "sim" / "j.sqlite"
    return journal, public_key(journal, here / "auditor.pem")
