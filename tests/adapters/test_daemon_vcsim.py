"""`orchestrator daemon` against vcsim: a new VM in vCenter is noticed through the real WaitForUpdatesEx watch."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _vcsim import admin
from pyVmomi import vim

from orchestrator.lab import Vcsim, write_lab_config

pytestmark = [pytest.mark.vcsim, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _create_vm(vcsim: Vcsim, name: str) -> None:
    """An administrator creates a VM in the lab's folder, behind the orchestrator's back."""
    with admin(vcsim) as content:
        folder = content.searchIndex.FindByInventoryPath("DC0/vm/pexip")
        host = content.searchIndex.FindByInventoryPath("DC0/host/DC0_H0").host[0]
        pool = host.parent.resourcePool
        spec = vim.vm.ConfigSpec(name=name, numCPUs=1, memoryMB=64, files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"))
        task = folder.CreateVM_Task(config=spec, pool=pool, host=host)
        deadline = time.monotonic() + 20
        while task.info.state not in ("success", "error") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert task.info.state == "success", task.info.error


def test_a_new_vm_matching_the_pattern_is_noticed(vcsim: Vcsim, tmp_path: Path) -> None:
    """The daemon's watch reports a new pexip-* VM that no node declares as an unknown VM, once it appears."""
    config = write_lab_config(tmp_path / "lab", vcsim)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ORCHESTRATOR_JOURNAL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "-c", str(config), "daemon", "--listen", "127.0.0.1:0", "-vv"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()

    def wait_for(text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(lines) if text in line]
            if found:
                return found[0]
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} in the daemon's log:\n{''.join(lines)}")

    try:
        wait_for("daemon ready")
        wait_for('"node": "pexip-mgmt", "why": "VM')  # its own VM imported, seen by the watch
        _create_vm(vcsim, "pexip-stray-01")
        seen = time.monotonic()
        line = wait_for('"vm": "pexip-stray-01"')
        assert "unknown VM" in line, line
        assert time.monotonic() - seen < 10
    finally:
        proc.terminate()
        code = proc.wait(60)
        reader.join(5)
        if proc.stderr is not None:
            proc.stderr.close()
    assert code == 0, "".join(lines)
