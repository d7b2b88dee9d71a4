"""Crash safety, end to end: a real `orchestrator simulate` process killed with SIGKILL again and again."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.orchestrator.crash_helpers import (
    assert_finished_once,
    crash_cli,
    simulate_proc,
    verify_journal,
    wait_for_steps,
)


@pytest.mark.slow
def test_sigkill_at_30_random_moments_then_finish(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """Killed with SIGKILL 30+ times at random moments, the simulation still ends with every effect once."""
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261128")))
    kills = 0
    started = time.monotonic()
    while kills < 32:
        proc = simulate_proc(procs, tmp_path, "--latency", "0.02")
        # Python start-up takes ~0.4 s here; kill anywhere from during start-up to well into the run.
        delay = rng.uniform(0.2, 1.6)
        try:
            _out, err = proc.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            kills += 1
            continue
        # It finished before the kill: start again from a fresh simulation to keep killing mid-run.
        assert proc.returncode == 0, err.decode() + _out.decode()
        assert_finished_once(tmp_path)
        # Everything, directories too. Removing only the files kept the journal's bootstrap store
        # (j.sqlite.bootstrap/): a run killed between a worker_vm's POST and the store of its file then
        # found the earlier simulation's file, uploaded it, and register_node waited for a sync that never
        # came (the final simulate's 300 s hang, 2 runs in 18 here).
        for p in tmp_path.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        assert time.monotonic() - started < 400
    final = simulate_proc(procs, tmp_path, "--latency", "0.02")
    try:
        _out, err = final.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # seen once in CI: show where it waits, not only that it did
        final.send_signal(signal.SIGABRT)
        _out, err = final.communicate()
        raise AssertionError("the final simulate hung for 300 s; its tracebacks:\n" + err.decode()[-6000:]) from None
    assert final.returncode == 0, err.decode()
    assert_finished_once(tmp_path)


@pytest.mark.slow
def test_exit_fault_after_the_irreversible_wizard(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """The process dies right after the security wizard ran, before the journal knew: no rerun of it."""
    first = simulate_proc(procs, tmp_path, "--faults", "exit=security_wizard")
    first.communicate(timeout=120)
    assert first.returncode == 70
    status = json.loads(crash_cli(tmp_path, "status", "pexip-mgr", "--json").stdout)["nodes"][0]
    assert (status["state"], status["step"]) == ("hardening", "security_wizard")
    second = simulate_proc(procs, tmp_path, "--faults", "exit=security_wizard")
    _out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()
    assert_finished_once(tmp_path)


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_resume_finishes(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM: no new step starts, the process exits 1 saying how to resume; `resume --all` finishes."""
    proc = simulate_proc(procs, tmp_path, "--latency", "0.05")
    wait_for_steps(tmp_path / "j.sqlite", 3)  # its handlers are in place once steps run (a fixed sleep raced them)
    proc.send_signal(signal.SIGTERM)
    out, _err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"interrupted" in out and b"orchestrator resume" in out
    verify_journal(tmp_path)
    resumed = crash_cli(tmp_path, "resume", "--all")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    status = json.loads(crash_cli(tmp_path, "status", "--json").stdout)
    assert {n["state"] for n in status["nodes"]} == {"ldap_authenticated"}
