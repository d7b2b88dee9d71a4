"""Benchmark: the whole lab lifecycle, wall time per phase (issue #8).

The lab (``orchestrator lab up --fresh``: vcsim, slapd and the network simulators' process: the
Management API, the SSH console and 2 provisioning interfaces, reboot windows of 2 s after each wizard)
and its deployment of 1 Management and 2 Conferencing Nodes, every system real but the CA: ``run``
(to the security wizard's gate, exit 3), ``approve``, ``resume --all`` (to the end), a second ``run``
(nothing changed), then ``lab down --reset``. Each phase is a CLI process, as ``make lab-demo`` runs
them. Prints each phase's wall time and the lab's reboot window; asserts nothing (exit 1 when a phase
ends with an unexpected exit code or the second run changes something).

Needs vcsim's build (Debian's golang-go and golang-github-vmware-govmomi-dev) and slapd.

    .venv/bin/python bench/lab_bench.py [--lab DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from orchestrator.lab import go_available  # noqa: E402 - after the path set-up above
from orchestrator.lab._servers import REBOOT_S  # noqa: E402


def _cli(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    code = "from orchestrator.cli import main; main()"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=900, check=False, cwd=ROOT
    )
    return time.perf_counter() - started, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, default=None, help="the lab directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    args = parser.parse_args()
    why = go_available()
    if why is not None:
        print(f"lab bench: skipped (vcsim cannot be built: {why})")
        return 0
    lab = (args.lab or Path(tempfile.mkdtemp(prefix="lab-bench-")) / "lab").resolve()
    phases: list[tuple[str, float, int, int]] = []  # name, seconds, exit code, expected exit code
    total = time.perf_counter()
    try:
        seconds, up = _cli("lab", "up", "--dir", str(lab), "--fresh", "--json")
        phases.append(("lab up --fresh", seconds, up.returncode, 0))
        if up.returncode != 0:
            print(up.stdout[-2000:], up.stderr[-2000:], file=sys.stderr)
            return 1
        config = json.loads(up.stdout)["config"]
        for name, argv, expected in (
            ("run (to the security wizard's gate)", ("run",), 3),
            (
                "approve security_wizard",
                ("approve", "pexip-mgmt", "security_wizard", "--by", "bench", "--reason", "b"),
                0,
            ),
            ("resume --all (to the end)", ("resume", "--all"), 0),
            ("run again (nothing to change)", ("run",), 0),
        ):
            seconds, done = _cli("-c", config, *argv)
            phases.append((name, seconds, done.returncode, expected))
            if done.returncode != expected:
                print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
                break
            if name.startswith("run again") and "0 step(s) changed" not in done.stdout:
                phases[-1] = (name + " CHANGED SOMETHING (MISSED)", seconds, done.returncode, expected)
    finally:
        if not args.keep:
            seconds, down = _cli("lab", "down", "--dir", str(lab), "--reset")
            phases.append(("lab down --reset", seconds, down.returncode, 0))
    wall = time.perf_counter() - total
    print(f"lab lifecycle: 1 Management + 2 Conferencing Nodes, reboot windows {REBOOT_S:g} s after each wizard")
    print(f"{'phase':<44} {'wall s':>8} {'exit':>5}")
    for name, seconds, code, expected in phases:
        mark = "" if code == expected else f"  (expected {expected}: MISSED)"
        print(f"{name:<44} {seconds:>8.2f} {code:>5}{mark}")
    print(f"{'whole lifecycle':<44} {wall:>8.2f}")
    return 0 if all(code == expected for _, _, code, expected in phases) and "MISSED" not in str(phases) else 1


if __name__ == "__main__":
    sys.exit(main())
