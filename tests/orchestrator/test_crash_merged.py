"""SIGKILL right after a merged transaction and before the next side effect (issue #11), in a real process.

The transaction that commits one step and starts the next (and, at a run's start, carries the opening
records held for it) is durable before the started step does anything: a process killed there leaves a
journal that verifies and ends with that start, and the resumed simulation runs the started step once.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orchestrator.conftest import NON_REPEATABLE

ROOT = Path(__file__).resolve().parents[2]

# Runs `orchestrator simulate`; the world's before_step hook (called before a step's first side effect,
# after its step_started committed) kills the process with SIGKILL once at (node, step) = argv[1:3].
_KILLER = """
import os, signal, sys
from pathlib import Path
from adapters.sim.world import SimWorld
node, step, mark = sys.argv[1], sys.argv[2], Path(sys.argv[3])
original = SimWorld.before_step
def before_step(self, n, s):
    if (n, s) == (node, step) and not mark.exists():
        mark.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, n, s)
SimWorld.before_step = before_step
from orchestrator.cli import main
sys.argv = ["orchestrator", *sys.argv[4:]]
main()
"""


def _args(tmp: Path) -> list[str]:
    return [
        "--journal",
        str(tmp / "j.sqlite"),
        "simulate",
        "--nodes",
        "1",
        "--world",
        str(tmp / "w.sqlite"),
        "--effects-out",
        str(tmp / "effects.json"),
    ]


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "orchestrator.cli", "--journal", str(tmp / "j.sqlite"), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _verified(tmp: Path) -> None:
    pem = _cli(tmp, "journal", "public-key")
    assert pem.returncode == 0, pem.stderr
    (tmp / "pub.pem").write_text(pem.stdout)
    verify = _cli(tmp, "journal", "verify", "--public-key", str(tmp / "pub.pem"))
    assert verify.returncode == 0 and "VERIFIED" in verify.stdout, verify.stdout + verify.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "step,before",
    [
        # the run's first step: its start carries the opening records (binding, run_started, registration)
        ("deploy_ova", ["deployment_bound", "definition_recorded", "run_started", "node_registered"]),
        # within a milestone: the installation wizard's commit and the login check's start
        ("verify_admin_login", ["step_committed:installation_wizard"]),
        # at a milestone's end: deployed reached, reserved started, and its first step started
        ("reserve_resources", ["step_committed:deploy_ova", "milestone_started:reserve_resources"]),
    ],
)
def test_sigkill_after_a_merged_transaction_before_the_started_steps_effect(
    tmp_path: Path, step: str, before: list[str]
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", _KILLER, "pexip-mgr", step, str(tmp_path / "killed"), *_args(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    with sqlite3.connect(f"file:{tmp_path / 'j.sqlite'}?mode=ro", uri=True) as db:
        events = [f"{k}:{s}" if s else k for k, s in db.execute("SELECT kind, step FROM events ORDER BY seq")]
    # What the merged transaction held is durable, and nothing of the started step came after it.
    assert events[-1] == f"step_started:{step}", events
    assert all(b in events[:-1] for b in before), events
    if step == "deploy_ova":  # nothing else was written before it: the opening records rode in its transaction
        assert events == [*before, "milestone_started:deploy_ova", "step_started:deploy_ova"], events
    assert events.count(f"step_started:{step}") == 1 and f"step_committed:{step}" not in events
    _verified(tmp_path)  # head-signed in the same transaction: the killed journal verifies as it is
    resumed = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *_args(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    effects = json.loads((tmp_path / "effects.json").read_text())["pexip-mgr"]
    for kind in NON_REPEATABLE:
        assert effects.get(kind, 1) == 1, f"{kind} happened {effects[kind]} times"
    assert effects["vm_import"] == 1 and effects["installation_wizard"] == 1 and effects["security_wizard"] == 1
    with sqlite3.connect(f"file:{tmp_path / 'j.sqlite'}?mode=ro", uri=True) as db:
        committed = db.execute(
            "SELECT count(*) FROM events WHERE kind = 'step_committed' AND step = ?", (step,)
        ).fetchone()[0]
    assert committed == 1
    _verified(tmp_path)
