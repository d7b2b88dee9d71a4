"""Journal write throughput against raw SQLite, on this machine and this disk.

Run: ``.venv/bin/python bench/journal_bench.py [--pair-rounds R] [--round-commits N] [--single-only]``

Every figure is measured in the same run, in a temp dir under the current directory
(a real disk, not tmpfs), with the journal's SQLite settings everywhere (WAL, ``synchronous=FULL``,
its page cache):

1. raw: one single-row INSERT + COMMIT per row (events-shaped rows).
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

Disk speed drifts (other processes share it; this disk's raw rate swings 1,400-6,000/s, and a whole
block of one side could land in a slow spell), so cases 1 and 2 are interleaved commit by commit: in
each of ``--pair-rounds`` rounds of ``--round-commits`` commits a raw commit and a journal commit alternate
(raw, journal, journal, raw, ...: each as often first as second), on two files open side by side in one
directory, both warmed up past their first WAL autocheckpoint (a fresh file's growing WAL makes every
fsync slower). Each round gives one ratio (the sums of the two sides' wall times); the target is judged
on the median of the rounds' ratios, printed with its quartiles and range. Beside each side's wall time
per commit is its CPU time per commit (this thread's, user and system, fsync's kernel work included)
measured on the same commits, so the rest (wall - CPU) is the time spent waiting on the disk: a reader
sees how much of the gap is the disk and how much is our Python (the journal's own share: its signed
checkpoints, one per round at the default ``--round-commits``, are printed apart).

After cases 1 and 2, CPU per commit with fsync removed (``synchronous=OFF``, thread CPU time) and WAL
pages written per commit, for both. Case 3 runs ``--rounds`` times, each right after a raw run;
the verify case three times, median reported. ``--single-only``: cases 1 and 2 alone.
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
WARM_UP = 1200  # commits before cases 1 and 2 are timed

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
    '{"attempt":0,"state":"reserved","step":null}',  # the node columns a journal event records it set
)


_RAW_SQL = (
    "INSERT INTO events (at, node, kind, step, attempt, key, from_state, to_state, actor, "
    "payload, prev_hash, hash, sets) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _raw_connection(path: Path) -> sqlite3.Connection:
    """An events-shaped table with the journal's own settings (journal/_schema.py: WAL, FULL, cache).

    Its rows are the journal's events' size (the same columns, ``sets`` included: 379 bytes of text).
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-256")
    conn.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, at TEXT, node TEXT, kind TEXT, step TEXT, "
        "attempt INTEGER, key TEXT, from_state TEXT, to_state TEXT, actor TEXT, payload TEXT, "
        "prev_hash TEXT, hash TEXT, sets TEXT)"
    )
    return conn


def raw_commits(conn: sqlite3.Connection, rows: int) -> None:
    """Single-row INSERT + COMMIT per row."""
    for _ in range(rows):
        conn.execute("BEGIN")
        conn.execute(_RAW_SQL, _RAW_ROW)
        conn.execute("COMMIT")


def bench_raw(workdir: Path, rows: int) -> float:
    """Single-row INSERT + COMMIT per row in a fresh file; rows/s."""
    conn = _raw_connection(workdir / "raw.sqlite")
    start = time.perf_counter()
    raw_commits(conn, rows)
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


class _SingleStream:
    """Case 2's journal: one commit() of one transition per durable step, a signed checkpoint every N."""

    def __init__(self, workdir: Path, checkpoint_every: int) -> None:
        self.journal, self.names = _journal(workdir, "single", 100)
        self.checkpoint_every = checkpoint_every
        self.done = 0

    def moves(self, rows: int) -> list[Transition]:
        """The next ``rows`` transitions, built before any is timed (as raw's row is)."""
        first, self.done = self.done, self.done + rows
        return [_transition(self.names[i % len(self.names)], i // len(self.names)) for i in range(first, first + rows)]

    def commits(self, rows: int) -> None:
        """``rows`` commits of one transition each, with the checkpoints due meanwhile."""
        first = self.done
        commit, checkpoint_every = self.journal.commit, self.checkpoint_every
        for i, move in enumerate(self.moves(rows), start=first + 1):
            commit([move])
            if i % checkpoint_every == 0:
                self.checkpoint()

    def checkpoint(self) -> None:
        self.journal.checkpoint(SIGNER, file_check=False)  # as a run's periodic ones (the closing one checks)


def bench_paired(workdir: Path, rounds: int, round_commits: int, checkpoint_every: int) -> dict[str, list[float]]:
    """Cases 1 and 2 interleaved commit by commit, in rounds; wall and CPU seconds per commit of each round.

    Both files stay open side by side (the same directory, the same SQLite settings) and are warmed
    up first (a WAL that already exists, as in a long run). Within a round a raw commit and a journal
    commit alternate in ABBA order (raw, journal, journal, raw, ...), so both sides meet the same disk.
    Returns per round: ``raw_wall``, ``raw_cpu``, ``single_wall``, ``single_cpu`` (checkpoints included),
    ``checkpoint_wall``, ``checkpoint_cpu`` (the journal's checkpoints alone, per commit) and ``ratio`` (raw
    wall / journal wall).
    """
    raw = _raw_connection(workdir / "raw.sqlite")
    stream = _SingleStream(workdir, checkpoint_every)
    # Warm-up, not timed: past the first WAL autocheckpoint (1,000 pages) of each, so that both
    # commit into a WAL file that is reused, not grown (growing it makes every fsync also write the
    # file's size: the old case 1 in a fresh file ran at a third of its steady rate).
    raw_commits(raw, WARM_UP)
    stream.commits(WARM_UP)
    wall, cpu = time.perf_counter, time.thread_time
    commit, checkpoint = stream.journal.commit, stream.checkpoint
    result: dict[str, list[float]] = {
        name: [] for name in ("raw_wall", "raw_cpu", "single_wall", "single_cpu", "checkpoint_wall", "checkpoint_cpu")
    }
    result["ratio"] = []
    for round_ in range(rounds):
        moves = stream.moves(round_commits)
        first = stream.done - round_commits
        # [wall, cpu] summed over the round: raw, the journal, the journal's checkpoints
        sums = {"raw": [0.0, 0.0], "single": [0.0, 0.0], "checkpoint": [0.0, 0.0]}
        raw_sum, single_sum, checkpoint_sum = sums["raw"], sums["single"], sums["checkpoint"]
        for i, move in enumerate(moves, start=first + 1):
            # raw, journal, journal, raw, raw, ...: each side as often first as second
            for side in ("raw", "single") if (round_ + i) % 2 == 0 else ("single", "raw"):
                w, c = wall(), cpu()
                if side == "raw":
                    raw_commits(raw, 1)
                    raw_sum[0] += wall() - w
                    raw_sum[1] += cpu() - c
                    continue
                commit([move])
                if i % stream.checkpoint_every == 0:
                    kw, kc = wall(), cpu()
                    checkpoint()
                    checkpoint_sum[0] += wall() - kw
                    checkpoint_sum[1] += cpu() - kc
                single_sum[0] += wall() - w
                single_sum[1] += cpu() - c
        for side, (side_wall, side_cpu) in sums.items():
            result[f"{side}_wall"].append(side_wall / round_commits)
            result[f"{side}_cpu"].append(side_cpu / round_commits)
        result["ratio"].append(raw_sum[0] / single_sum[0])
    raw.close()
    stream.journal.close()
    return result


def _wal_frames(conn: sqlite3.Connection) -> int:
    """Frames now in the WAL (a passive checkpoint copies them and reports how many there are)."""
    return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def bench_breakdown(workdir: Path, rows: int, checkpoint_every: int, rounds: int = 7) -> dict[str, float]:
    """Where cases 1 and 2's time goes apart from the disk: CPU per commit and WAL pages per commit.

    CPU: fresh files with ``synchronous=OFF`` (no fsync, nothing else changed), this thread's CPU time,
    the least of ``rounds`` runs of ``rows`` commits. Pages: frames the WAL gained over ``rows``
    commits with ``synchronous=FULL`` (autocheckpoint off meanwhile), checkpoints of case 2 included.
    """
    raw = _raw_connection(workdir / "raw.sqlite")
    stream = _SingleStream(workdir, checkpoint_every)
    conns = {"raw": raw, "single": stream.journal._conn}
    run: dict[str, Callable[[int], None]] = {"raw": lambda n: raw_commits(raw, n), "single": stream.commits}
    result: dict[str, float] = {}
    for name, conn in conns.items():
        run[name](WARM_UP)
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        run[name](rows)
        result[f"{name}_pages"] = _wal_frames(conn) / rows
        conn.execute("PRAGMA wal_autocheckpoint=1000")
        conn.execute("PRAGMA synchronous=OFF")
        cpu = []
        for _ in range(rounds):
            start = time.thread_time()
            run[name](rows)
            cpu.append((time.thread_time() - start) / rows * 1e6)
        result[f"{name}_cpu_us"] = min(cpu)
    raw.close()
    stream.journal.close()
    return result


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


def _quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair-rounds", type=int, default=30, help="rounds of cases 1 and 2 (median of their ratios)")
    parser.add_argument(
        "--round-commits", type=int, default=200, help="commits of each side per round of cases 1 and 2"
    )
    parser.add_argument("--rows", type=int, default=1000, help="raw rows per round of case 3 (5x as many transitions)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of case 3 (median of the ratios)")
    parser.add_argument(
        "--checkpoint-every", type=int, default=200, help="events between signed checkpoints (the policy's default)"
    )
    parser.add_argument("--verify-events", type=int, default=100_000, help="events in the verify case")
    parser.add_argument("--single-only", action="store_true", help="cases 1 and 2 only")
    args = parser.parse_args()

    cases: dict[str, Callable[[Path], float]] = {
        "raw": lambda d: bench_raw(d, args.rows),
        "batch100": lambda d: bench_batch(d, 100, args.rows * 5),
        "batch1000": lambda d: bench_batch(d, 1000, args.rows * 5),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    base = Path(tempfile.mkdtemp(prefix=".journal-bench-", dir=Path.cwd()))
    try:
        workdir = base / "paired"
        workdir.mkdir()
        paired = bench_paired(workdir, args.pair_rounds, args.round_commits, args.checkpoint_every)
        shutil.rmtree(workdir)
        workdir = base / "breakdown"
        workdir.mkdir()
        breakdown = bench_breakdown(workdir, args.checkpoint_every * 2, args.checkpoint_every)
        shutil.rmtree(workdir)
        for _ in range(0 if args.single_only else args.rounds):
            for name in cases:  # each batch case right after a raw run, judged against it
                workdir = base / f"{name}-{len(results[name])}"
                workdir.mkdir()
                results[name].append(cases[name](workdir))
                shutil.rmtree(workdir)
        verify = None
        if not args.single_only:
            workdir = base / "verify"
            workdir.mkdir()
            verify = bench_verify(workdir, args.verify_events)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"journal benchmark; disk dir {Path.cwd()}; sqlite {sqlite3.sqlite_version}, WAL, synchronous=FULL")
    print()
    ratios = paired["ratio"]
    low, high = _quartiles(ratios)
    single_ratio = statistics.median(ratios)
    all_met = single_ratio >= 0.7
    print(
        f"cases 1 and 2: {args.pair_rounds} rounds of {args.round_commits} commits of each, raw and journal commits "
        "alternating one by one, in one directory"
    )
    print("per commit, median over the rounds (min..max); CPU: this thread's user + system time; wait = wall - CPU")
    print(f"{'case':<40}{'wall us':>9}{'(min..max)':>15}{'CPU us':>9}{'(min..max)':>15}{'wait us':>9}{'rate /s':>9}")
    print("-" * 106)
    for label, name in (
        ("1. raw SQLite: INSERT + COMMIT per row", "raw"),
        ("2. journal: commit() of 1, signing on", "single"),
        ("   of which its signed checkpoints", "checkpoint"),
    ):
        walls = [v * 1e6 for v in paired[f"{name}_wall"]]
        cpus = [v * 1e6 for v in paired[f"{name}_cpu"]]
        wall_us, cpu_us = statistics.median(walls), statistics.median(cpus)
        rate = f"{1e6 / wall_us:>9,.0f}" if name != "checkpoint" else ""
        print(
            f"{label:<40}{wall_us:>9.1f}{f'({min(walls):.0f}..{max(walls):.0f})':>15}{cpu_us:>9.1f}"
            f"{f'({min(cpus):.0f}..{max(cpus):.0f})':>15}{wall_us - cpu_us:>9.1f}{rate}"
        )
    raw_wall, raw_cpu = (statistics.median(paired[f"raw_{kind}"]) * 1e6 for kind in ("wall", "cpu"))
    single_wall, single_cpu = (statistics.median(paired[f"single_{kind}"]) * 1e6 for kind in ("wall", "cpu"))
    wait_gap = (single_wall - single_cpu) - (raw_wall - raw_cpu)
    print(
        f"case 2 - case 1: wall +{single_wall - raw_wall:.0f} us a commit, of which CPU +{single_cpu - raw_cpu:.0f} us "
        f"(Python, signing, checkpoints, the kernel's work for more pages) and waiting on the disk +{wait_gap:.0f} us"
    )
    print(
        f"case 2 / case 1 (rate), median of the {len(ratios)} rounds' ratios: {single_ratio:.2f}x   target >= 0.70  "
        f"{'yes' if all_met else 'NO'}"
    )
    print(f"   (quartiles {low:.2f}..{high:.2f}, min..max {min(ratios):.2f}..{max(ratios):.2f})")
    head_us = bench_head_signature()
    single_us = statistics.median(paired["single_wall"]) * 1e6
    print(
        f"   (case 2 signs the head in every commit, {head_us:.1f} us: {head_us / single_us * 100:.1f}% of a case-2 "
        f"commit; and a checkpoint every {args.checkpoint_every} events)"
    )
    print(
        f"   with fsync removed (synchronous=OFF, CPU time per commit): raw {breakdown['raw_cpu_us']:.1f} us, "
        f"journal {breakdown['single_cpu_us']:.1f} us;"
    )
    print(
        f"   WAL pages per commit (synchronous=FULL): raw {breakdown['raw_pages']:.2f}, "
        f"journal {breakdown['single_pages']:.2f} (event, its node index, node row, head; checkpoints)"
    )
    if verify is None:
        print()
        print("case 2's target met" if all_met else "CASE 2's TARGET NOT MET")
        return 0 if all_met else 1
    print()
    print(f"case 3: {args.rounds} rounds, each right after a raw run of {args.rows} rows (median of the ratios)")
    print(f"{'case':<44}{'median rate':>14}  {'unit':<14}{'x raw':>7}  {'target':>7}  met")
    print("-" * 96)
    for label, name in (
        ("3a. journal: 100 nodes, commit() of 100", "batch100"),
        ("3b. journal: 1000 nodes, commit() of 100", "batch1000"),
    ):
        ratio = statistics.median(v / r for v, r in zip(results[name], results["raw"], strict=True))
        met = ratio >= 1.0
        all_met &= met
        rate = statistics.median(results[name])
        print(f"{label:<44}{rate:>14,.0f}  {'transitions/s':<14}{ratio:>7.2f}  {'>= 1.0':>7}  {'yes' if met else 'NO'}")
    spread = ", ".join(f"{name} {min(v):,.0f}..{max(v):,.0f}" for name, v in results.items())
    print(f"spread over rounds (min..max per s): {spread}")
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
