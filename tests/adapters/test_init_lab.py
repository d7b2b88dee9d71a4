"""`orchestrator init --lab`: the running lab's deployment file, with comments, that runs as written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.lab import lab_down, lab_up

pytestmark = [pytest.mark.vcsim, pytest.mark.slow]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from orchestrator.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_init_lab_writes_the_labs_file_that_validates_and_runs_to_the_gate(tmp_path: Path, vcsim_binary: Path) -> None:
    """lab up, init --lab: a commented file of the lab's systems; validate passes; run stops at the wizard gate."""
    lab = tmp_path / "lab"
    status = lab_up(lab, fresh=True)
    config = tmp_path / "site" / "lab.toml"
    config.parent.mkdir()
    try:
        made = CliRunner().invoke(cli, ["init", "--lab", "--lab-dir", str(lab), str(config), "--json"])
        assert made.exit_code == 0, made.output
        out = json.loads(made.stdout)
        assert out["lab"] == str(lab.resolve()) and out["sim"] is False and out["todo"]
        text = config.read_text()
        assert text.startswith("# Written by `orchestrator init --lab` from the lab in")
        assert "# For a real site, edit" in text and "#   - vcenter.url" in text
        assert status["vcenter"]["url"] in text and status["pexip_api"]["url"] in text
        checked = _cli("-c", str(config), "validate")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        run = _cli("-c", str(config), "run", "-q")
        assert run.returncode == 3, run.stdout + run.stderr[-3000:]
        assert "approve pexip-mgmt security_wizard" in run.stdout
        again = CliRunner().invoke(cli, ["init", "--lab", "--lab-dir", str(lab), str(config)])
        assert again.exit_code == 2 and "--force" in again.stderr  # no silent overwrite
    finally:
        lab_down(lab, reset=True)
