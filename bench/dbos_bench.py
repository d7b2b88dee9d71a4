"""Benchmark: durable steps per second, DBOS Transact on SQLite against our engine, interleaved (issue #11, target 2).

DBOS Transact (the ``bench`` extra pins it) on SQLite in WAL mode with ``synchronous=FULL``: ``--workflows``
workflows (300) of ``--steps`` trivial steps (7), all started at once and waited for. Our engine: the
whole simulated deployment (``orchestrator.api.simulate``, latency 0, real observe/diff/apply/verify
against the twins), with as many nodes as make about the same number of committed steps. The two run
in turns, ``--rounds`` times each, in one sitting, so a loaded machine loads both alike;
each round of each side in a process of its own (DBOS's background threads would share our GIL); the
figures are committed steps per second of wall time, and the ratio of the medians. Prints figures;
asserts nothing.

    .venv/bin/python bench/dbos_bench.py [--workflows 300] [--steps 7] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET = 5.0
STEPS_PER_NODE = 12  # about: the Manager makes 19, a Conferencing Node 12 (counted from the journal each round)


def _dbos_engine(path: Path) -> Any:
    """The engine DBOS builds for SQLite, plus WAL and synchronous=FULL (as our journal runs)."""
    import sqlalchemy as sa
    from sqlalchemy import event

    engine = sa.create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"  # what DBOS's own SQLite engine sets
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=FULL")

    return engine


class DbosRunner:
    """One launched DBOS application with a workflow of ``steps`` trivial steps."""

    def __init__(self, workdir: Path, steps: int) -> None:
        from dbos import DBOS

        path = workdir / "dbos.sqlite"
        sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").close()  # WAL is kept by the file
        self._dbos = DBOS
        DBOS(
            config={
                "name": "bench",
                "system_database_url": f"sqlite:///{path}",
                "system_database_engine": _dbos_engine(path),
                "log_level": "WARNING",
            }
        )

        @DBOS.step()
        def trivial(i: int) -> int:
            return i + 1

        @DBOS.workflow()
        def workflow(n: int) -> int:
            total = 0
            for i in range(n):
                total += trivial(i)
            return total

        self._workflow = workflow
        self._steps = steps
        DBOS.launch()
        self.path = path

    def journal_mode(self) -> tuple[str, int]:
        with sqlite3.connect(self.path) as conn:
            return conn.execute("PRAGMA journal_mode").fetchone()[0], conn.execute("PRAGMA synchronous").fetchone()[0]

    def round(self, workflows: int) -> tuple[int, float]:
        """Start ``workflows`` at once, wait for all; (steps done, wall seconds)."""
        from dbos import DBOS, SetWorkflowID

        start = time.perf_counter()
        handles = []
        for _ in range(workflows):
            with SetWorkflowID(str(uuid.uuid4())):
                handles.append(DBOS.start_workflow(self._workflow, self._steps))
        expected = sum(range(1, self._steps + 1))
        for handle in handles:
            if handle.get_result() != expected:
                raise RuntimeError("a DBOS workflow returned a wrong result")
        return workflows * self._steps, time.perf_counter() - start

    def close(self) -> None:
        self._dbos.destroy()


def ours_round(nodes: int, workdir: Path, number: int) -> tuple[int, float, int]:
    """One whole simulated deployment; (steps committed, wall seconds, exit code)."""
    from orchestrator import api

    settings = api.SimulationSettings(
        nodes=nodes,
        latency=0.0,
        world=workdir / f"w{number}.sqlite",
        journal=workdir / f"j{number}.sqlite",
        fresh=True,
    )
    start = time.perf_counter()
    report, _ = asyncio.run(api.simulate(settings))
    wall = time.perf_counter() - start
    with sqlite3.connect(settings.journal) as conn:
        steps = conn.execute("SELECT count(*) FROM events WHERE kind = 'step_committed'").fetchone()[0]
    return steps, wall, report.exit_code


def child(kind: str, opts: argparse.Namespace, nodes: int) -> None:
    """One side's round in a process of its own (DBOS's background threads would share our GIL)."""
    import json

    from orchestrator.logs import configure_logging

    configure_logging("ERROR")
    logging.getLogger("dbos").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="dbos-bench-") as tmp:
        workdir = Path(tmp) / "run"  # the journal's keys go beside the journal's directory: inside tmp too
        workdir.mkdir()
        if kind == "dbos":
            dbos = DbosRunner(workdir, opts.steps)
            try:
                mode, sync = dbos.journal_mode()
                dbos.round(min(20, opts.workflows))  # warm-up: first connections, statement caches
                steps, wall = dbos.round(opts.workflows)
            finally:
                dbos.close()
            print(json.dumps({"steps": steps, "wall": wall, "mode": mode, "synchronous": sync}))
        else:
            ours_round(1, workdir, 0)  # warm-up: the same imports and first-use costs
            steps, wall, code = ours_round(nodes, workdir, 1)
            print(json.dumps({"steps": steps, "wall": wall, "exit": code}))


def _run_child(kind: str, opts: argparse.Namespace) -> dict[str, Any]:
    import json
    import subprocess

    argv = [sys.executable, __file__, "--child", kind, "--workflows", str(opts.workflows), "--steps", str(opts.steps)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=["dbos", "ours"], help=argparse.SUPPRESS)
    opts = parser.parse_args()
    wanted = opts.workflows * opts.steps
    nodes = max(1, round((wanted - 19) / STEPS_PER_NODE) + 1)
    if opts.child:
        child(opts.child, opts, nodes)
        return
    theirs: list[float] = []
    ours: list[float] = []
    for number in range(1, opts.rounds + 1):
        d = _run_child("dbos", opts)
        theirs.append(d["steps"] / d["wall"])
        print(
            f"round {number}: DBOS (SQLite journal_mode={d['mode']}, synchronous={d['synchronous']}, 2 = FULL) "
            f"{opts.workflows} workflows x {opts.steps} steps: {d['steps']} steps in {d['wall']:.2f} s "
            f"= {theirs[-1]:.0f} steps/s"
        )
        o = _run_child("ours", opts)
        ours.append(o["steps"] / o["wall"])
        print(
            f"round {number}: ours (simulate --nodes {nodes} --latency 0): {o['steps']} steps in {o['wall']:.2f} s "
            f"= {ours[-1]:.0f} steps/s (exit {o['exit']})"
        )
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(
        f"median: ours {statistics.median(ours):.0f} steps/s, DBOS {statistics.median(theirs):.0f} steps/s: "
        f"ratio {ratio:.2f}x  [target >= {TARGET:g}x] {'OK' if ratio >= TARGET else 'MISSED'}"
    )
    print("each side runs in a process of its own; wall time of the run itself, imports and a warm-up round excluded")


if __name__ == "__main__":
    main()
