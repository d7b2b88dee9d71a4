"""`orchestrator init`: a starter file that `validate` accepts; --sim runs at once; no silent overwrite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ORCHESTRATOR_CONFIG", None)
    env.pop("ORCHESTRATOR_JOURNAL", None)
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True, env=env)


@pytest.mark.slow  # three processes: run, approve, resume
def test_init_sim_validates_then_runs_to_the_gate_and_resumes_to_done(tmp_path: Path) -> None:
    config = tmp_path / "site" / "orchestrator.toml"
    config.parent.mkdir()
    result = CliRunner().invoke(cli, ["init", "--sim", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = config.read_text()
    assert text.startswith("# Written by `orchestrator init --sim`")
    assert all(mode == "sim" for mode in _modes(tomllib.loads(text)))
    assert oct((config.parent / "secrets" / "bios-password").stat().st_mode & 0o777) == "0o600"
    checked = CliRunner().invoke(cli, ["-c", str(config), "validate"], catch_exceptions=False)
    assert checked.exit_code == 0, checked.output
    run = _cli("-c", str(config), "run", "-q")
    assert run.returncode == 3, run.stderr
    assert "approve pexip-mgmt security_wizard" in run.stdout + run.stderr
    approved = _cli("-c", str(config), "approve", "pexip-mgmt", "security_wizard", "--by", "test", "--reason", "t")
    assert approved.returncode == 0, approved.stderr
    resumed = _cli("-c", str(config), "resume", "--all", "--json")
    assert resumed.returncode == 0, resumed.stderr
    nodes = json.loads(resumed.stdout)["nodes"]
    assert len(nodes) == 3 and {n["result"] for n in nodes.values()} == {"done"}, nodes


def _modes(data: dict[str, object]) -> list[object]:
    return [v["mode"] for v in data.values() if isinstance(v, dict) and "mode" in v]


def test_init_real_lists_what_to_fill_in_and_validates_offline(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    result = CliRunner().invoke(cli, ["init", str(config), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["path"] == str(config) and out["sim"] is False and out["secret_files"] == []
    assert any("vcenter.url" in line for line in out["todo"])
    text = config.read_text()
    assert "#   - vcenter.url" in text
    assert tomllib.loads(text)["vcenter"]["password"].startswith("env:")
    checked = CliRunner().invoke(cli, ["-c", str(config), "validate", "--offline"], catch_exceptions=False)
    assert checked.exit_code == 0, checked.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.toml"]


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    config = tmp_path / "orchestrator.toml"
    config.write_text("# mine\n")
    refused = CliRunner().invoke(cli, ["init", "--sim", str(config)], catch_exceptions=False)
    assert refused.exit_code == 2
    assert "--force" in refused.stderr
    assert config.read_text() == "# mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orchestrator.toml"]  # nothing else written either
    forced = CliRunner().invoke(cli, ["init", "--force", str(config)], catch_exceptions=False)
    assert forced.exit_code == 0, forced.output
    assert config.read_text() != "# mine\n"


def test_init_into_a_missing_directory_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "no" / "o.toml")], catch_exceptions=False)
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_lab_without_a_lab_says_to_start_one_and_writes_nothing(tmp_path: Path) -> None:
    """`init --lab` with no lab in --lab-dir: exit 2 naming --lab and `orchestrator lab up`; no file made."""
    config = tmp_path / "lab.toml"
    result = CliRunner().invoke(cli, ["init", "--lab", "--lab-dir", str(tmp_path / "lab"), str(config)])
    assert result.exit_code == 2, result.output
    assert "--lab" in result.stderr and "orchestrator lab up" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_lab_with_a_stopped_lab_names_what_is_stopped(tmp_path: Path) -> None:
    """A lab directory whose simulators are gone (a dead pid): exit 2, the stopped ones named, nothing written."""
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "orchestrator.toml").write_text('[deployment]\nname = "lab"\n')
    state = {"config": str(lab / "orchestrator.toml"), "vcenter": {"pid": 2**22 + 7}}
    (lab / "state.json").write_text(json.dumps(state))
    result = CliRunner().invoke(cli, ["init", "--lab", "--lab-dir", str(lab), str(tmp_path / "lab.toml")])
    assert result.exit_code == 2, result.output
    assert "is not running (vcenter, ldap, pexip_api stopped)" in result.stderr
    assert not (tmp_path / "lab.toml").exists()


def test_init_takes_sim_or_lab_not_both(tmp_path: Path) -> None:
    """--sim with --lab: exit 2, nothing written."""
    result = CliRunner().invoke(cli, ["init", "--sim", "--lab", str(tmp_path / "x.toml")])
    assert result.exit_code == 2 and "--sim or --lab" in result.stderr
    assert list(tmp_path.iterdir()) == []
