"""Benchmark: durable journal commits per committed step during ``simulate`` (issue #11, target 1).

Runs the whole simulated deployment in this process (``orchestrator.api.simulate``, latency 0)
and counts the journal's durable transactions: every ``COMMIT`` its SQLite connection executes
after a write (seen by ``sqlite3``'s trace callback, so the count does not depend on how the engine
groups its writes; a read transaction's COMMIT syncs nothing and is counted apart), split into
those that append events and the others (leases, heartbeats, meta), and tabled by what each held. The figure is
transactions per ``step_committed`` event; the transactions that hold a step's start or commit
are also counted on their own (the set-up's and the gates' apart). Targets: at most 1.0 with
one node, at most 0.1 with 100 nodes moving at once. ``--profile`` adds a cProfile of a bigger
run (top entries by cumulative and by own time). Prints figures; asserts nothing.

    .venv/bin/python bench/commits_bench.py [--nodes 1 100] [--profile 1000] [--top 15]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import pstats
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {1: 1.0, 100: 0.1}


_EVENT_KIND = re.compile(r"VALUES \(\d+, '[^']*', (?:NULL|'(?:[^']|'')*'), '([^']*)'")
_META_NAME = re.compile(r"INSERT INTO meta \(name, value\) VALUES \('([^']*)'")


def _what(statement: str) -> str | None:
    """What a write holds, for the table: an event's kind, else the table and what changed (None: bookkeeping)."""
    text = " ".join(statement.split())
    if text.startswith("INSERT INTO events"):
        found = _EVENT_KIND.search(text)
        return found.group(1) if found else "event ?"
    if text.startswith("INSERT INTO checkpoints"):
        return "checkpoint"
    if text.startswith("UPDATE nodes SET lease_owner = NULL"):
        return "leases released"
    if text.startswith("UPDATE nodes SET lease_since"):
        return "leases acquired"
    if text.startswith("UPDATE nodes SET heartbeat"):
        return "heartbeat"
    if text.startswith("INSERT INTO meta"):
        found = _META_NAME.search(text)
        name = found.group(1) if found else "?"
        # head, head_signature, definition_hash, deployment: written with the events they go with.
        return None if name in ("head", "head_signature", "definition_hash", "deployment") else f"meta {name}"
    return None


class CommitCounter:
    """Counts COMMITs on every journal connection opened while installed, and what each one held."""

    def __init__(self) -> None:
        self.commits = 0
        self.event_commits = 0
        self.read_commits = 0
        self._inserted = False
        self._wrote = False
        self._holds: list[str] = []
        self.by_content: collections.Counter[str] = collections.Counter()  # durable commits by what they held
        self.step_transactions = 0  # journal.commit calls holding a step's start or commit

    def trace(self, statement: str) -> None:
        head = statement.lstrip()[:12].upper()
        if head.startswith("INSERT INTO EVENTS") or statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
            self._inserted = True
        if head.startswith(("INSERT", "UPDATE", "DELETE", "REPLACE")):
            self._wrote = True
            what = _what(statement)
            if what is not None and what not in self._holds:
                self._holds.append(what)
        elif head.startswith("COMMIT"):
            # A read transaction's COMMIT writes nothing and syncs nothing: not a durable commit.
            if self._wrote:
                self.commits += 1
                self.by_content[" + ".join(self._holds) or "(other)"] += 1
            else:
                self.read_commits += 1
            if self._inserted:
                self.event_commits += 1
            self._inserted = self._wrote = False
            self._holds = []
        elif head.startswith("ROLLBACK") and not head.startswith("ROLLBACK TO"):
            self._inserted = self._wrote = False
            self._holds = []

    def install(self) -> Any:
        from journal import Journal

        original = Journal.open.__func__  # type: ignore[attr-defined]
        counter = self

        def open_traced(cls: type[Journal], *args: Any, **kwargs: Any) -> Journal:
            journal: Journal = original(cls, *args, **kwargs)
            conn: sqlite3.Connection = journal._conn
            conn.set_trace_callback(counter.trace)
            return journal

        # The engine's group committer writes with commit_seqs, the end of a run with either.
        commit, commit_seqs = Journal.commit, Journal.commit_seqs

        def counted(write: Any) -> Any:
            def write_counted(journal: Journal, transitions: Any) -> Any:
                if any(t.kind in ("step_started", "step_committed") for t in transitions):
                    counter.step_transactions += 1
                return write(journal, transitions)

            return write_counted

        Journal.open = classmethod(open_traced)  # type: ignore[method-assign,assignment]
        Journal.commit = counted(commit)  # type: ignore[method-assign]
        Journal.commit_seqs = counted(commit_seqs)  # type: ignore[method-assign]

        def uninstall() -> None:
            Journal.open = classmethod(original)  # type: ignore[method-assign,assignment]
            Journal.commit = commit  # type: ignore[method-assign]
            Journal.commit_seqs = commit_seqs  # type: ignore[method-assign]

        return uninstall


def simulate(nodes: int, workdir: Path) -> tuple[Any, float]:
    from orchestrator import api

    settings = api.SimulationSettings(
        nodes=nodes, latency=0.0, world=workdir / f"w{nodes}.sqlite", journal=workdir / f"j{nodes}.sqlite", fresh=True
    )
    start = time.perf_counter()
    report, _ = asyncio.run(api.simulate(settings))
    return report, time.perf_counter() - start


def event_kinds(path: Path) -> collections.Counter[str]:
    with sqlite3.connect(path) as conn:
        return collections.Counter(dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall()))


def commits_per_step(nodes: int, workdir: Path) -> dict[str, Any]:
    counter = CommitCounter()
    uninstall = counter.install()
    try:
        report, wall = simulate(nodes, workdir)
    finally:
        uninstall()
    kinds = event_kinds(workdir / f"j{nodes}.sqlite")
    steps = kinds.get("step_committed", 0)
    return {
        "nodes": nodes,
        "exit_code": report.exit_code,
        "wall_s": wall,
        "commits": counter.commits,
        "read_commits": counter.read_commits,
        "event_commits": counter.event_commits,
        "steps_committed": steps,
        "events": sum(kinds.values()),
        "per_step": counter.commits / steps if steps else float("nan"),
        "step_transactions_per_step": counter.step_transactions / steps if steps else float("nan"),
        "event_commits_per_step": counter.event_commits / steps if steps else float("nan"),
        "kinds": dict(kinds.most_common()),
        "by_content": counter.by_content,
    }


def profile(nodes: int, workdir: Path, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    report, wall = simulate(nodes, workdir)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)  # where the time is spent itself
    return (
        f"simulate --nodes {nodes} --latency 0 under cProfile: {wall:.2f} s (exit {report.exit_code})\n"
        + out.getvalue()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--profile", type=int, default=0, help="also profile a simulation of this many nodes")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--table-max", type=int, default=10, help="print the table of transactions up to this many nodes"
    )
    opts = parser.parse_args()
    from orchestrator.logs import configure_logging

    configure_logging("ERROR")
    with tempfile.TemporaryDirectory(prefix="commits-bench-") as tmp:
        workdir = Path(tmp) / "run"  # the journal's keys go beside the journal's directory: inside tmp too
        workdir.mkdir()
        for nodes in opts.nodes:
            f = commits_per_step(nodes, workdir)
            target = TARGETS.get(nodes)
            verdict = "" if target is None else f"  target <= {target}: {'OK' if f['per_step'] <= target else 'MISSED'}"
            print(
                f"{nodes:>5} node(s): {f['commits']} durable journal transactions ({f['event_commits']} appending "
                f"events; {f['read_commits']} read-only ones not counted) for "
                f"{f['steps_committed']} committed steps = {f['per_step']:.2f} per step "
                f"({f['event_commits_per_step']:.2f} appending events; transactions holding a step's start or "
                f"commit: {f['step_transactions_per_step']:.2f} per step); {f['events']} events, "
                f"{f['wall_s']:.2f} s, exit {f['exit_code']}{verdict}"
            )
            print("        events by kind: " + ", ".join(f"{k} {n}" for k, n in f["kinds"].items()))
            if nodes <= opts.table_max:
                print("        durable transactions by what they held (events in order of first appearance):")
                for what, n in sorted(f["by_content"].items(), key=lambda item: -item[1]):
                    print(f"        {n:>6}  {what}")
        if opts.profile:
            print(profile(opts.profile, workdir, opts.top))


if __name__ == "__main__":
    main()
