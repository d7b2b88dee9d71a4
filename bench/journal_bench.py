"""Journal write throughput against raw SQLite, on this machine and this disk.

Run: ``.venv/bin/python bench/journal_bench.py [--rows N] [--rounds R]``

Every figure is measured in the same run, in a temp dir under the current directory
(a real disk, not tmpfs), with WAL and ``synchronous=FULL`` everywhere:

1. raw: one single-row INSERT + COMMIT per row in a fresh file (events-shaped rows).
2. journal, one node at a time: each durable transition is one ``commit()`` of one
   transition (event + node row + head), with signing on: the head signed in every commit
   (journal/_head.py) and an Ed25519 checkpoint every ``--checkpoint-every`` events, as the
   engine's policy would. Target: >= 0.7x raw. The cost of the head signature alone (sign
   + JSON, in memory) is printed per commit.
3. journal, 100 and 1000 nodes moving at once: ``commit()`` of 100 transitions per
   call. Target: >= 1.0x raw.
4. ``journal verify`` of a 100,000-event journal (``--verify-events``): the full check
   (chain, every node row against the derived state, signatures, integrity_check) and
   the incremental check from the last signed checkpoint. Target: full <= 2 s.

Disk speed drifts (other processes share it), so the cases run interleaved for several
rounds, raw and case 2 back to back in alternating order, and each target is judged on the
median of the per-round ratios (a ratio of two rates measured moments apart, so a slow
spell of the disk slows both); the verify case is run three times, median reported.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from journal import Journal, Signer, Transition, VerifyStatus  # noqa: E402
from journal._head import signed_head  # noqa: E402

SIGNER = Signer.generate()

STATES = ("deployed", "reserved", "bios_locked", "installed", "hardened", "certified", "ldap_authenticated")
_RAW_ROW = (
    "2024-05-01T12:00:00.000000Z",
    "conf-0001",
    "step_committed",
    "reserve_resources",
    1,
    "conf-0001/reserve_resources/1",
    "deployed",
    "reserved",
    "orchestrator",
    '{"observed":{"cpu_reservation_mhz":8000,"memory_reserved_mb":16384},"changed":true}',
    "0" * 64,
    "f" * 64,
)


def bench_raw(workdir: Path, rows: int) -> float:
    """Single-row INSERT + COMMIT per row in a fresh file; rows/s."""
    conn = sqlite3.connect(workdir / "raw.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, at TEXT, node TEXT, kind TEXT, step TEXT, "
        "attempt INTEGER, key TEXT, from_state TEXT, to_state TEXT, actor TEXT, payload TEXT, "
        "prev_hash TEXT, hash TEXT)"
    )
    sql = (
        "INSERT INTO events (at, node, kind, step, attempt, key, from_state, to_state, actor, "
        "payload, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    start = time.perf_counter()
    for _ in range(rows):
        conn.execute("BEGIN")
        conn.execute(sql, _RAW_ROW)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return rows / elapsed


def _transition(node: str, i: int) -> Transition:
    """The node's ``i``-th move round the ring of states (each from_state the previous to_state)."""
    state_from, state_to = STATES[i % len(STATES)], STATES[(i + 1) % len(STATES)]
    return Transition(
        node=node,
        kind="step_committed",
        step="reserve_resources",
        attempt=1,
        key=f"{node}/reserve_resources/{i}",
        from_state=state_from,
        to_state=state_to,
        payload={"observed": {"cpu_reservation_mhz": 8000, "memory_reserved_mb": 16384}, "changed": True},
        update={"step": None, "attempt": 0},
    )


def _journal(workdir: Path, name: str, nodes: int) -> tuple[Journal, list[str]]:
    journal = Journal.open(workdir / f"{name}.sqlite")
    journal.sign_heads(SIGNER)  # as a run does once the journal verified: every commit signs the head
    names = [f"conf-{i:04d}" for i in range(nodes)]
    journal.ensure_nodes((n, "conferencing", STATES[0]) for n in names)
    return journal, names


def bench_single(workdir: Path, rows: int, checkpoint_every: int) -> float:
    """One commit() of one transition per durable step, a signed checkpoint every N; transitions/s."""
    journal, names = _journal(workdir, "single", 100)
    start = time.perf_counter()
    for i in range(rows):
        journal.commit([_transition(names[i % len(names)], i // len(names))])
        if (i + 1) % checkpoint_every == 0:
            journal.checkpoint(SIGNER, file_check=False)  # as a run's periodic checkpoints (the closing one checks)
    elapsed = time.perf_counter() - start
    journal.close()
    return rows / elapsed


def bench_batch(workdir: Path, nodes: int, rows: int, per_call: int = 100) -> float:
    """``nodes`` nodes moving together, committed ``per_call`` transitions at a time."""
    journal, names = _journal(workdir, f"batch{nodes}", nodes)
    total = 0
    start = time.perf_counter()
    i = 0
    while total < rows:
        for first in range(0, nodes, per_call):  # one round: every node moves once
            batch = [_transition(n, i) for n in names[first : first + per_call]]
            journal.commit(batch)
            total += len(batch)
        i += 1
    elapsed = time.perf_counter() - start
    journal.close()
    return total / elapsed


def bench_verify(workdir: Path, events: int) -> dict[str, float]:
    """Seconds for: a full verify of ``events`` events, a checkpoint, an incremental verify."""
    journal, names = _journal(workdir, "verify", 1000)
    i, total = 0, 1000
    while total < events:
        for first in range(0, len(names), 1000):
            batch = [_transition(n, i) for n in names[first : first + 1000]][: events - total]
            journal.commit(batch)
            total += len(batch)
        i += 1
    public = SIGNER.public_key_pem()
    start = time.perf_counter()
    first_checkpoint = journal.checkpoint(SIGNER)
    checkpoint_s = time.perf_counter() - start
    for n in range(100):
        journal.commit([_transition(names[n], i)])
    times: dict[str, list[float]] = {"full": [], "incremental": []}
    for _ in range(3):
        for name, incremental in (("full", False), ("incremental", True)):
            start = time.perf_counter()
            report = journal.verify(public_key=public, incremental=incremental)
            times[name].append(time.perf_counter() - start)
            if report.status != VerifyStatus.VERIFIED:
                raise SystemExit(f"verify failed: {report.problems}")
    journal.close()
    return {
        "events": float(first_checkpoint["seq"] + 100),
        "full": statistics.median(times["full"]),
        "full_min": min(times["full"]),
        "full_max": max(times["full"]),
        "incremental": statistics.median(times["incremental"]),
        "checkpoint": checkpoint_s,
    }


def bench_head_signature(count: int = 5000) -> float:
    """Microseconds per head signature (Ed25519 sign + canonical JSON), the cost added to each commit."""
    start = time.perf_counter()
    for i in range(count):
        signed_head(SIGNER, "bench-deployment", i, "f" * 64, 200)
    return (time.perf_counter() - start) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows per single-commit case per round")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (median reported)")
    parser.add_argument(
        "--checkpoint-every", type=int, default=200, help="events between signed checkpoints (the policy's default)"
    )
    parser.add_argument("--verify-events", type=int, default=100_000, help="events in the verify case")
    args = parser.parse_args()

    cases: dict[str, Callable[[Path], float]] = {
        "raw": lambda d: bench_raw(d, args.rows),
        "single": lambda d: bench_single(d, args.rows, args.checkpoint_every),
        "batch100": lambda d: bench_batch(d, 100, args.rows * 5),
        "batch1000": lambda d: bench_batch(d, 1000, args.rows * 5),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    base = Path(tempfile.mkdtemp(prefix=".journal-bench-", dir=Path.cwd()))
    try:
        for round_ in range(args.rounds):
            # raw and case 2 back to back, in alternating order, so that both see the same disk
            order = ["raw", "single"] if round_ % 2 == 0 else ["single", "raw"]
            for name in [*order, "batch100", "batch1000"]:
                workdir = base / f"{name}-{len(results[name])}"
                workdir.mkdir()
                results[name].append(cases[name](workdir))
                shutil.rmtree(workdir)
        workdir = base / "verify"
        workdir.mkdir()
        verify = bench_verify(workdir, args.verify_events)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in results.items()}
    ratio_of = {  # the median of each round's ratio to that round's raw rate
        name: statistics.median(v / r for v, r in zip(values, results["raw"], strict=True))
        for name, values in results.items()
    }
    rows = [
        ("1. raw SQLite: INSERT + COMMIT per row", "rows/s", median["raw"], None),
        ("2. journal: commit() of 1, signing on", "transitions/s", median["single"], 0.7),
        ("3a. journal: 100 nodes, commit() of 100", "transitions/s", median["batch100"], 1.0),
        ("3b. journal: 1000 nodes, commit() of 100", "transitions/s", median["batch1000"], 1.0),
    ]
    print(f"journal benchmark: {args.rounds} interleaved rounds, median; disk dir {Path.cwd()}")
    print(f"sqlite {sqlite3.sqlite_version}, WAL, synchronous=FULL")
    print()
    print(f"{'case':<44}{'median rate':>14}  {'unit':<14}{'x raw':>7}  {'target':>7}  met")
    print("-" * 96)
    all_met = True
    for (label, unit, rate, target), name in zip(rows, ("raw", "single", "batch100", "batch1000"), strict=True):
        ratio = ratio_of[name]
        if target is None:
            print(f"{label:<44}{rate:>14,.0f}  {unit:<14}{ratio:>7.2f}  {'':>7}")
            continue
        met = ratio >= target
        all_met &= met
        goal = f">= {target:.1f}"
        print(f"{label:<44}{rate:>14,.0f}  {unit:<14}{ratio:>7.2f}  {goal:>7}  {'yes' if met else 'NO'}")
    print()
    spread = ", ".join(f"{name} {min(v):,.0f}..{max(v):,.0f}" for name, v in results.items())
    print(f"spread over rounds (min..max per s): {spread}")
    print(
        f"(cases 2 and 3 sign the head in every commit; case 2 signs a checkpoint every {args.checkpoint_every} events)"
    )
    head_us = bench_head_signature()
    print(
        f"(the head signature costs {head_us:.1f} us per commit: {head_us * median['single'] / 1e4:.1f}% of a case-2 "
        "commit)"
    )
    print("(x raw: the median of the per-round ratios to that round's raw rate)")
    print()
    verify_met = verify["full"] <= 2.0
    all_met &= verify_met
    print(f"4. journal verify of {verify['events']:,.0f} events (trusted public key, signed checkpoint):")
    print(
        f"   full (chain, rows, continuity, signatures, integrity_check) {verify['full']:>7.2f} s   "
        f"target <= 2.00 s  {'yes' if verify_met else 'NO'}  "
        f"(3 runs: {verify['full_min']:.2f}..{verify['full_max']:.2f} s)"
    )
    print("   (what run, resume, approve, cert import and maintenance check before acting)")
    print(f"   incremental from the last signed checkpoint (100 events)   {verify['incremental']:>7.3f} s")
    print(f"   first checkpoint (verifies, then signs)                    {verify['checkpoint']:>7.2f} s")
    print()
    print("all targets met" if all_met else "SOME TARGETS NOT MET")
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
