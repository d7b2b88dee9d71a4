"""Helpers of the end-to-end crash tests (test_crash_safety, test_provisioning): a real `orchestrator simulate`
process, its journal watched read-only, and the checks that it finished with every effect once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.orchestrator.conftest import NON_REPEATABLE

ORCHESTRATOR = [sys.executable, "-m", "orchestrator.cli"]
ROOT = Path(__file__).resolve().parents[2]


def simulate_proc(procs: list[subprocess.Popen[bytes]], tmp: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = [
        *ORCHESTRATOR,
        "--journal",
        str(tmp / "j.sqlite"),
        "simulate",
        "--nodes",
        "4",
        "--world",
        str(tmp / "w.sqlite"),
        "--effects-out",
        str(tmp / "effects.json"),
        *extra,
    ]
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # SIGABRT dumps every thread's traceback (a hang's diagnosis)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    procs.append(proc)
    return proc


def wait_for_steps(journal: Path, count: int, timeout: float = 60.0) -> None:
    """Until the running simulation's journal holds ``count`` committed steps (read-only, never locking it)."""
    import sqlite3

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1) as db:
                (done,) = db.execute("SELECT count(*) FROM events WHERE kind = 'step_committed'").fetchone()
            if done >= count:
                return
        except sqlite3.Error:
            pass  # not created yet
        time.sleep(0.05)
    raise AssertionError(f"the simulation committed fewer than {count} steps in {timeout:g} s")


def crash_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ORCHESTRATOR, "--journal", str(tmp / "j.sqlite"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_finished_once(tmp: Path) -> None:
    status = json.loads(crash_cli(tmp, "status", "--json").stdout)
    assert {n["state"] for n in status["nodes"]} == {"ldap_authenticated"}
    effects = json.loads((tmp / "effects.json").read_text())
    for node, kinds in effects.items():
        for kind in NON_REPEATABLE:
            if kind in kinds:
                assert kinds[kind] == 1, f"{node}: {kind} happened {kinds[kind]} times"
        assert kinds["vm_import"] == 1 and kinds["csr_create"] == 1, node
    assert effects["pexip-mgr"]["security_wizard"] == 1
    assert effects["pexip-mgr"]["installation_wizard"] == 1
    assert effects["pexip-mgr"]["role_create"] == 1
    verify_journal(tmp)


def verify_journal(tmp: Path) -> None:
    """`journal verify` with the simulation's public key (as an auditor would be given it) exits 0."""
    pem = crash_cli(tmp, "journal", "public-key")
    assert pem.returncode == 0, pem.stderr
    (tmp.parent / f"{tmp.name}.pub.pem").write_text(pem.stdout)
    verify = crash_cli(tmp, "journal", "verify", "--public-key", str(tmp.parent / f"{tmp.name}.pub.pem"))
    assert verify.returncode == 0 and "VERIFIED" in verify.stdout, verify.stdout + verify.stderr
