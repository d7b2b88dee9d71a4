"""`orchestrator daemon` against vcsim: a new VM in vCenter is noticed through the real WaitForUpdatesEx watch;
the nodes are driven to ldap_authenticated; a VM deleted behind the daemon's back fails its node with the
repair command, through the watch's leave event (no resync due)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _vcsim import admin
from pyVmomi import vim

from journal import kinds
from orchestrator.lab import Vcsim, write_lab_config
from tests.orchestrator._daemon_proc import all_done, approve, events, states

pytestmark = [pytest.mark.vcsim, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _create_vm(vcsim: Vcsim, name: str) -> datetime.datetime:
    """An administrator creates a VM in the lab's folder, behind the orchestrator's back; when vCenter made it."""
    with admin(vcsim) as content:
        folder = content.searchIndex.FindByInventoryPath("DC0/vm/pexip")
        host = content.searchIndex.FindByInventoryPath("DC0/host/DC0_H0").host[0]
        pool = host.parent.resourcePool
        spec = vim.vm.ConfigSpec(name=name, numCPUs=1, memoryMB=64, files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"))
        task = folder.CreateVM_Task(config=spec, pool=pool, host=host)
        deadline = time.monotonic() + 120  # a bound on a hang, not on how soon
        while task.info.state not in ("success", "error") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert task.info.state == "success", task.info.error
        made: datetime.datetime = task.info.completeTime
        return made


def _delete_vm(vcsim: Vcsim, name: str) -> None:
    """An administrator powers a VM off and deletes it."""
    with admin(vcsim) as content:
        vm = content.searchIndex.FindByInventoryPath(f"DC0/vm/pexip/{name}")
        assert vm is not None, name
        for start in (vm.PowerOffVM_Task, vm.Destroy_Task):
            task = start()
            deadline = time.monotonic() + 120  # a bound on a hang, not on how soon
            while task.info.state not in ("success", "error") and time.monotonic() < deadline:
                time.sleep(0.1)
            assert task.info.state == "success", task.info.error


def test_a_new_vm_is_noticed_nodes_are_driven_and_a_deleted_vm_fails_its_node(vcsim: Vcsim, tmp_path: Path) -> None:
    """The daemon's watch reports a new pexip-* VM that no node declares as an unknown VM, once it appears;
    approved, every node reaches ldap_authenticated; a node's VM deleted fails that node naming the repair."""
    config = write_lab_config(tmp_path / "lab", vcsim)
    # No timed resync within the test's waits (300 s by default, which they could add up to on a loaded machine):
    # the deleted VM must be noticed by the watch's leave event.
    config.write_text(config.read_text() + "\n[daemon]\nresync_s = 3600\n")
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
        made = _create_vm(vcsim, "pexip-stray-01")
        line = wait_for('"vm": "pexip-stray-01"')
        assert "unknown VM" in line, line
        # Noticed as it happens, not when the watch's long poll (maxWaitSeconds 20) ends: measured between the
        # times vcsim and the daemon recorded (this test's own polling of both does not count), under 15 s so
        # that a loaded machine keeps a wide margin over the 0.13 s it took (unloaded) and a long poll's end
        # still fails it.
        logged = datetime.datetime.fromisoformat(json.loads(line)["timestamp"])
        assert (logged - made).total_seconds() < 15, (made, line)

        wait_for('"state": "awaiting_approval"')
        approve(config)
        deadline = time.monotonic() + 120
        while not all_done(config, 3)():
            assert time.monotonic() < deadline, (states(config), "".join(lines))
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.2)

        _delete_vm(vcsim, "pexip-conf-01")
        line = wait_for('"event": "node failed on drift: not retried until repaired"', timeout=30)
        assert "orchestrator resume pexip-conf-01 --from-step deploy_ova" in line, line
        assert states(config)["pexip-conf-01"] == "failed"
        found = [e for e in events(config) if e.kind == kinds.DRIFT_DETECTED and e.node == "pexip-conf-01"]
        assert found and found[0].step == "deploy_ova", found
    finally:
        proc.terminate()
        code = proc.wait(60)
        reader.join(5)
        if proc.stderr is not None:
            proc.stderr.close()
    assert code == 0, "".join(lines)
