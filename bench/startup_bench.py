"""Benchmark: start-up of the ``orchestrator`` command (issue #11, target 4).

Whole-process wall time, best of N, of ``orchestrator --help``, ``orchestrator status`` (a table)
and ``orchestrator status --json`` on a small journal made here by ``simulate --nodes 2``; each
against the target of 0.25 s (OK / MISSED). Then the heaviest entries of ``python -X importtime``
for each command (cumulative microseconds), and which of the heavy packages it imported at all.
Prints figures; asserts nothing.

The bytecode is cached (in a private ``PYTHONPYCACHEPREFIX``, so the tree is not written) even
where ``PYTHONDONTWRITEBYTECODE`` is set, as an installed copy has it: otherwise every run would
also compile each of our modules from source, some 40% of ``status``'s time (``--no-bytecode``
measures that).

    .venv/bin/python bench/startup_bench.py [--runs 7] [--top 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.25
HEAVY = ("pyVmomi", "aiohttp", "cryptography", "adapters.sim", "rich", "structlog", "sqlite_utils", "asyncio")

COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "status": ["status"],
    "status --json": ["status", "--json"],
}


_PYCACHE: str | None = None  # where the runs cache their bytecode; None: as the environment says


def _env() -> dict[str, str]:
    env = dict(os.environ)
    if _PYCACHE is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ORCHESTRATOR_CONFIG", None)
    env.pop("ORCHESTRATOR_JOURNAL", None)
    return env


def _run(args: list[str], cwd: Path, extra: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *(extra or []), "-m", "orchestrator.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, check=False)


def walls(args: list[str], cwd: Path, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        done = _run(args, cwd)
        out.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{args} failed ({done.returncode}): {done.stderr[-500:]}")
    return out


def import_profile(args: list[str], cwd: Path, top: int) -> tuple[list[tuple[int, str]], set[str]]:
    """The ``top`` heaviest imports by cumulative time, and the heavy packages imported at all."""
    done = _run(args, cwd, extra=["-X", "importtime"])
    entries: list[tuple[int, str]] = []
    names: set[str] = set()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            cumulative = int(parts[1].strip())
        except ValueError:
            continue  # the header line
        name = parts[2].rstrip()
        entries.append((cumulative, name))
        names.add(name.strip())
    entries.sort(reverse=True)
    heavy = {h for h in HEAVY if any(n == h or n.startswith(h + ".") for n in names)}
    return entries[:top], heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="best of N runs per command")
    parser.add_argument("--top", type=int, default=12, help="import-time entries shown per command")
    parser.add_argument("--no-bytecode", action="store_true", help="leave PYTHONDONTWRITEBYTECODE as it is")
    opts = parser.parse_args()
    global _PYCACHE
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        cwd = Path(tmp)
        if not opts.no_bytecode:
            _PYCACHE = str(cwd / "pycache")
        print(f"bytecode: {'as the environment says' if _PYCACHE is None else 'cached (' + _PYCACHE + ')'}")
        made = _run(["simulate", "--nodes", "2", "--json"], cwd)
        if made.returncode != 0:
            raise SystemExit(f"simulate failed: {made.stderr[-500:]}")
        for name, args in COMMANDS.items():
            # status finds simulation.journal.sqlite through --journal: the journal simulate wrote.
            full = args if name == "--help" else ["--journal", "simulation.journal.sqlite", *args]
            _run(full, cwd)  # caches the bytecode of what this command imports and simulate did not
            times = walls(full, cwd, opts.runs)
            wall = min(times)
            verdict = "OK" if wall <= TARGET_S else "MISSED"
            print(
                f"orchestrator {name:<14} {wall * 1000:7.1f} ms (best of {opts.runs}, median "
                f"{statistics.median(times) * 1000:.1f})  target {TARGET_S * 1000:.0f} ms  {verdict}"
            )
            entries, heavy = import_profile(full, cwd, opts.top)
            print(f"  heavy packages imported: {', '.join(sorted(heavy)) or 'none'}")
            for cumulative, module in entries:
                print(f"  {cumulative / 1000:8.1f} ms cumulative  {module}")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=_env(), check=True)
        print(f"bare interpreter: {(time.perf_counter() - start) * 1000:.1f} ms (one run, for scale)")


if __name__ == "__main__":
    main()
