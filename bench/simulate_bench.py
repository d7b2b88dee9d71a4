"""Benchmark: `orchestrator simulate --nodes 1000 --latency 0` wall time and memory per node.

Targets (issue #11, which tightened issue #2's 15 s): at most 5 s wall, at most 10 KB of memory per node above the
process's baseline, taken as the peak RSS of the same simulation with 1 node (the
journal, the simulated world, the event loop and the simulated CA all exist there
too). The figure above the RSS right after imports, and the marginal cost between
N/10 and N nodes, are printed beside it. Prints figures; asserts nothing.

    .venv/bin/python bench/simulate_bench.py [--nodes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def in_process(nodes: int, workdir: Path) -> dict[str, float]:
    import adapters.sim.ca
    import adapters.sim.console
    import adapters.sim.ldap
    import adapters.sim.pexip
    import adapters.sim.vsphere
    import adapters.sim.world  # noqa: E401,F401
    import config.load  # noqa: F401
    from orchestrator import api
    from orchestrator.logs import configure_logging

    configure_logging("WARNING")
    baseline = rss_kb()
    settings = api.SimulationSettings(
        nodes=nodes, latency=0.0, world=workdir / "w.sqlite", journal=workdir / "j.sqlite", fresh=True
    )
    start = time.perf_counter()
    report, _ = asyncio.run(api.simulate(settings))
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    return {
        "wall_s": wall,
        "baseline_kb": baseline,
        "peak_kb": peak,
        "per_node_kb": (peak - baseline) / nodes,
        "exit_code": report.exit_code,
    }


def cli(nodes: int, workdir: Path) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "--journal",
            str(workdir / "cli-j.sqlite"),
            "simulate",
            "--nodes",
            str(nodes),
            "--latency",
            "0",
            "--world",
            str(workdir / "cli-w.sqlite"),
            "--fresh",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start, proc.returncode


def _workdir(tmp: str) -> Path:
    """A directory inside the temporary one: the journal's keys go beside the journal's directory, so inside too."""
    path = Path(tmp) / "run"
    path.mkdir()
    return path


def child(nodes: int) -> None:
    import json

    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        print(json.dumps(in_process(nodes, _workdir(tmp))))


def measure(nodes: int) -> dict[str, float]:
    """Each size in a fresh process: peak RSS is per process."""
    import json

    out = subprocess.run([sys.executable, __file__, "--child", str(nodes)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        wall_cli, code = cli(args.nodes, _workdir(tmp))
    print(
        f"orchestrator simulate --nodes {args.nodes} --latency 0 (CLI, whole process): {wall_cli:.2f} s wall, exit "
        f"{code}  "
        f"[target <= 5 s] {'OK' if wall_cli <= 5 and code == 0 else 'MISSED'}"
    )
    big, small, one = measure(args.nodes), measure(max(args.nodes // 10, 1)), measure(1)
    print(f"in-process run of {args.nodes} nodes: {big['wall_s']:.2f} s wall, exit {big['exit_code']}")
    over_one = (big["peak_kb"] - one["peak_kb"]) / (args.nodes - 1)
    print(
        "memory per node above the process's baseline, the same simulation with 1 node (peak "
        f"{one['peak_kb'] / 1024:.1f} MiB "
        f"vs {big['peak_kb'] / 1024:.1f} MiB): {over_one:.2f} KB  [target <= 10 KB] "
        f"{'OK' if over_one <= 10 else 'MISSED'}"
    )
    print(
        "memory per node above the RSS right after imports "
        "(before the journal, the world, the loop and the CA exist): "
        f"{big['per_node_kb']:.2f} KB"
    )
    marginal = (big["peak_kb"] - small["peak_kb"]) / (args.nodes - max(args.nodes // 10, 1))
    print(
        f"marginal memory per node (peak at {args.nodes} minus peak at {max(args.nodes // 10, 1)} nodes): "
        f"{marginal:.2f} KB"
    )
    print("all figures include the simulated world (vCenter, Pexip API, CA... twins) living in the same process")


if __name__ == "__main__":
    main()
