"""The plan shows the SNMP community (configured text), and still no secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from config.secrets import REDACTED
from orchestrator.cli import cli
from tests.orchestrator.cli_helpers import SECRETS, sim_config, sim_env


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    sim_env(tmp_path, monkeypatch)
    return sim_config(tmp_path)


def _plan(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["-c", str(config), "run", "--dry-run", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_the_plan_shows_the_snmp_community_and_no_secret(config: Path) -> None:
    """`snmp_community = "pexip-secure"` as configured, not [redacted]; no secret's value anywhere in text or JSON."""
    text, as_json = _plan(config), _plan(config, "--json")
    assert 'snmp_community = "pexip-secure"' in text
    assert REDACTED not in text and REDACTED not in as_json
    rows = json.loads(as_json)["nodes"]["pexip-mgr"]
    (snmp,) = [r for r in rows if r["step"] == "snmpv3"]
    assert snmp["will_set"]["snmp_community"] == "pexip-secure"
    leaked = [name for name, value in SECRETS.items() if value in text or value in as_json]
    assert not leaked
