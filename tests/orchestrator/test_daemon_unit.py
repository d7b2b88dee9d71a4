"""config/orchestrator.service: the directives the daemon relies on, and `systemd-analyze verify` silent on it."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "config" / "orchestrator.service"


def _service() -> configparser.SectionProxy:
    parser = configparser.RawConfigParser(strict=True)  # a key given twice would be an error here
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd's keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_the_unit_is_a_notify_service_with_a_watchdog_sandboxed_under_its_own_user() -> None:
    service = _service()
    assert service["Type"] == "notify"
    assert service["WatchdogSec"].endswith("s") and int(service["WatchdogSec"][:-1]) > 0
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["User"] == "orchestrator" or service.get("DynamicUser") == "yes"
    assert service["StateDirectory"] == "orchestrator"
    assert service["ExecStart"].split()[1:3] == ["daemon", "--config"]
    assert service["ExecReload"].endswith("-HUP $MAINPID")  # SIGHUP reloads the deployment file
    assert "2" in service["RestartPreventExitStatus"].split()  # bad input: a restart would not help


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is absent (Debian's systemd package)")
    # verify checks that ExecStart's program exists: point it at this environment's console script.
    program = Path(sys.executable).parent / "orchestrator"
    if not program.exists():
        pytest.skip(f"no console script at {program} (the package is not installed in this environment)")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/orchestrator", str(program)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys are only warned about
