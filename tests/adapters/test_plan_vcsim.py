"""A saved plan against a real vCenter API (vcsim): the observed values it is bound to are stable, a change made
behind the orchestrator's back refuses it, and an unchanged plan is applied step for step."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from _vcsim import admin, lab_deployment
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.lab import Vcsim

pytestmark = [pytest.mark.vcsim, pytest.mark.slow]


def _cli(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["-c", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _power_on(vc: Vcsim, name: str) -> None:
    """What an administrator at the vSphere client could do: power the VM on (before its BIOS is locked)."""
    from pyVmomi import vim

    with admin(vc) as content:
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        vm = next(v for v in view.view if v.name == name)
        assert vm.runtime.powerState == "poweredOff"
        task = vm.PowerOnVM_Task()
        while task.info.state not in ("success", "error"):
            time.sleep(0.05)
        assert task.info.state == "success"


def test_a_plan_against_vcenter_is_stable_refused_after_a_change_and_applied_exactly(
    vcsim: Vcsim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two plans see the same vCenter; a VM powered on refuses the first; a new plan runs exactly its steps."""
    monkeypatch.chdir(tmp_path)
    deployment = lab_deployment(vcsim, tmp_path / "lab")
    config = Path(deployment.source)
    assert _cli(config, "run", "-q", "--until", "reserved", deployment.management.name)[0] == 0
    assert (
        _cli(config, "run", "--dry-run", "--until", "installed", "-o", "plan.json", deployment.management.name)[0] == 0
    )
    code, out, _ = _cli(config, "run", "--dry-run", "--json", "--until", "installed", deployment.management.name)
    saved = json.loads((tmp_path / "plan.json").read_text())["plan"]
    assert code == 0 and json.loads(out)["bound"] == saved["bound"]  # nothing volatile in what is observed
    assert saved["nodes"][deployment.management.name][0]["step"] == "lock_bios"

    _power_on(vcsim, deployment.management.name)
    code, _out, err = _cli(config, "run", "--plan", "plan.json")
    assert code == 2 and "observed state: what the systems show changed since the plan was made" in err

    assert (
        _cli(config, "run", "--dry-run", "--until", "installed", "-o", "plan2.json", deployment.management.name)[0] == 0
    )
    planned = json.loads((tmp_path / "plan2.json").read_text())["plan"]["nodes"][deployment.management.name]
    code, out, err = _cli(config, "run", "--plan", "plan2.json", "-q")
    assert code == 0, out + err
    journal = Path(deployment.journal.path)
    journal = journal if journal.is_absolute() else config.parent / journal
    with sqlite3.connect(journal) as conn:
        done = [s for (s,) in conn.execute("SELECT step FROM events WHERE kind = 'step_committed' ORDER BY seq")]
    assert done[-len(planned) :] == [r["step"] for r in planned]
