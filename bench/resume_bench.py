"""Benchmark: resume over a 10,000-node journal; deciding every node's next step.

Target (issue #2): at most 1 s to decide every node's next step, measured from opening
the journal (what `orchestrator resume --all` does before it starts any step): check the
definition, read the node table, rebuild the engine's models in its machine, ask the planner.
Prints figures; asserts nothing.

    .venv/bin/python bench/resume_bench.py [--nodes 10000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.load import simulated_deployment  # noqa: E402
from journal import Journal, Transition  # noqa: E402
from machines.lifecycle import MILESTONES, STEPS, TRANSIENT_OF  # noqa: E402
from orchestrator import api  # noqa: E402
from orchestrator.engine import Engine  # noqa: E402


def build(path: Path, deployment: object) -> None:
    """A journal where the nodes stand at random places: at milestones or mid-step."""
    rng = random.Random(7)
    with Journal.open(path) as j:
        j.ensure_nodes((n.name, n.role, "new") for n in deployment.nodes)  # type: ignore[attr-defined]
        batch: list[Transition] = []
        for spec in deployment.nodes:  # type: ignore[attr-defined]
            n, role = spec.name, spec.role
            m = MILESTONES[-1] if role == "management" else rng.choice(MILESTONES)
            batch.append(Transition(node=n, kind="step_committed", from_state="new", to_state=m))
            if rng.random() < 0.3 and m != MILESTONES[-1]:
                nxt = MILESTONES[MILESTONES.index(m) + 1]
                step = STEPS[role][nxt][0]
                batch.append(
                    Transition(
                        node=n,
                        kind="step_started",
                        step=step,
                        from_state=m,
                        to_state=TRANSIENT_OF[nxt],
                        update={"step": step},
                    )
                )
            if len(batch) >= 500:
                j.commit(batch)
                batch = []
        if batch:
            j.commit(batch)


def decide(path: Path, deployment: object) -> tuple[float, Counter[str], int]:
    """What `resume --all` does before its first step: open, rebuild the engine's models, plan."""
    start = time.perf_counter()
    with api.open_journal(path) as journal:
        engine = Engine(deployment, journal, systems=None)  # type: ignore[arg-type]
        engine.load()
        actions = Counter(type(engine.plan(m)).__name__ for m in engine._models.values())
    return time.perf_counter() - start, actions, len(engine._models)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        path = Path(tmp) / "big.sqlite"
        t = time.perf_counter()
        deployment = simulated_deployment(args.nodes, Path(tmp))
        build(path, deployment)
        print(
            f"built a {args.nodes}-node journal in {time.perf_counter() - t:.2f} s ({path.stat().st_size / 1e6:.1f} MB)"
        )
        best = min(decide(path, deployment)[0] for _ in range(3))
        seconds, actions, n = decide(path, deployment)
        print(
            f"decided the next step of {n} nodes in {best:.3f} s (best of 3)  [target <= 1 s] "
            f"{'OK' if best <= 1 else 'MISSED'}"
        )
        print("  next actions:", dict(actions))


if __name__ == "__main__":
    main()
