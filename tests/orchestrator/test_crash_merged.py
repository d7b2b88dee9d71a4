"""SIGKILL right after a merged transaction and before the next side effect (issue #11), in a real process.

The transaction that commits one step and starts the next (and, at a run's start, carries the opening
records held for it; a gate opened; the steps in between that changed nothing) is made durable by the
barrier right before the started step's first side effect: a process killed there leaves a journal that
verifies and ends with that start, and the resumed simulation runs the started step once. Killed before a
step's observe instead, the previous step's commit may not be on disk yet: the resumed simulation observes
that step again, finds its effect done and commits it without repeating it.
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

# Runs `orchestrator simulate` and kills it with SIGKILL once at (node, step, point) = argv[1:4]: at point
# "apply", when the step's apply begins (its barrier done, nothing of its side effect yet); at point "step",
# in the world's before_step hook (before the step observes: its start may still be deferred).
_KILLER = """
import os, signal, sys
from pathlib import Path
from adapters.sim.world import SimWorld
from orchestrator import steps
node, step, point, mark = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
def kill(n):
    if n == node and not mark.exists():
        mark.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
if point == "apply":
    target = steps.STEPS[step]
    original_apply = target.apply
    async def apply(ctx, observed, changes):
        kill(ctx.node.name)
        return await original_apply(ctx, observed, changes)
    target.apply = apply
else:
    original = SimWorld.before_step
    def before_step(self, n, s):
        if s == step:
            kill(n)
        original(self, n, s)
    SimWorld.before_step = before_step
from orchestrator.cli import main
sys.argv = ["orchestrator", *sys.argv[5:]]
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
    "point,step,last,before",
    [
        # the run's first step: its start carries the opening records (binding, run_started, registration)
        (
            "apply",
            "deploy_ova",
            "step_started:deploy_ova",
            ["deployment_bound", "definition_recorded", "run_started", "node_registered"],
        ),
        # within a milestone: the security wizard's commit and the global settings' start
        ("apply", "global_settings", "step_started:global_settings", ["step_committed:security_wizard"]),
        # at a milestone's end: deployed reached, reserved started, and its first step started
        (
            "apply",
            "reserve_resources",
            "step_started:reserve_resources",
            ["step_committed:deploy_ova", "milestone_started:reserve_resources"],
        ),
        # a step that changed nothing (the login check) rode in the barrier of the next one, with its gate opened
        (
            "apply",
            "security_wizard",
            "gate_opened:security_wizard",
            [
                "step_committed:installation_wizard",
                "step_started:verify_admin_login",
                "step_committed:verify_admin_login",
                "milestone_started:security_wizard",
                "step_started:security_wizard",
            ],
        ),
        # the certificate taken from the CA: durable with nothing after it before it is installed
        ("apply", "install_certificate", "gate_opened:install_certificate", ["step_started:install_certificate"]),
        # before the login check observes: the installation wizard's commit was not on disk yet
        ("step", "verify_admin_login", "step_started:installation_wizard", ["step_committed:lock_bios"]),
    ],
)
def test_sigkill_after_a_merged_transaction_before_the_started_steps_effect(
    tmp_path: Path, point: str, step: str, last: str, before: list[str]
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", _KILLER, "pexip-mgr", step, point, str(tmp_path / "killed"), *_args(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    with sqlite3.connect(f"file:{tmp_path / 'j.sqlite'}?mode=ro", uri=True) as db:
        events = [f"{k}:{s}" if s else k for k, s in db.execute("SELECT kind, step FROM events ORDER BY seq")]
    # What the merged transaction held is durable, and nothing of the started step came after it.
    assert events[-1] == last, events
    assert all(b in events[:-1] for b in before), events
    if step == "deploy_ova":  # nothing else was written before it: the opening records rode in its transaction
        assert events == [*before, "milestone_started:deploy_ova", "step_started:deploy_ova"], events
    if point == "apply":
        assert events.count(f"step_started:{step}") == 1 and f"step_committed:{step}" not in events
    else:  # killed before observing: the step before it was applied, its commit not yet on disk
        assert f"step_started:{step}" not in events and "step_committed:installation_wizard" not in events
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
        committed = dict(db.execute("SELECT step, count(*) FROM events WHERE kind = 'step_committed' GROUP BY step"))
    assert committed[step] == 1 and committed["installation_wizard"] == 1, committed
    _verified(tmp_path)
