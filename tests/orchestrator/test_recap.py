"""The recap at the end of every run: per node ok/changed/retried/waiting/failed, in text, JSON and the journal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from journal import Journal, kinds
from orchestrator.cli import cli
from tests.orchestrator.conftest import simulate

COUNTS = ("ok", "changed", "retried", "waiting", "failed")


@pytest.fixture(autouse=True)
def _here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATOR_JOURNAL", raising=False)


def _simulate(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = CliRunner().invoke(cli, ["simulate", "--json", *args], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def _events(kind: str) -> list:  # type: ignore[type-arg]
    with Journal.open(Path("simulation.journal.sqlite"), readonly=True) as journal:
        return [e for e in journal.events() if e.kind == kind]


def test_json_gains_a_recap_and_keeps_its_keys() -> None:
    """`simulate --json`: exit_code and nodes as before, plus a recap whose counts match the journal."""
    code, out = _simulate("--nodes", "2")
    assert code == 0
    assert set(out) == {"exit_code", "nodes", "recap"}
    assert out["nodes"]["pexip-mgr"]["result"] == "done"
    recap = out["recap"]
    assert set(recap["nodes"]) == {"pexip-mgr", "pexip-conf-00001"}
    committed = _events(kinds.STEP_COMMITTED)
    changed = [e for e in committed if e.payload.get("changed")]
    assert recap["totals"]["changed"] == len(changed) > 0
    assert recap["totals"]["ok"] == len(committed) - len(changed)
    assert recap["totals"]["failed"] == recap["totals"]["waiting"] == 0
    mgr = recap["nodes"]["pexip-mgr"]
    assert mgr["steps_changed"] == [e.step for e in changed if e.node == "pexip-mgr"]
    assert mgr["duration_s"] >= 0 and recap["wall_s"] > 0


def test_the_recap_is_journaled_as_a_run_level_event_and_the_chain_verifies() -> None:
    """The journal's last event is run_recap with the printed recap; `journal verify` still passes."""
    _, out = _simulate("--nodes", "2")
    (event,) = _events(kinds.RUN_RECAP)
    assert event.node is None and event.payload == out["recap"]
    verify = CliRunner().invoke(cli, ["--journal", "simulation.journal.sqlite", "journal", "verify"])
    assert verify.exit_code == 0, verify.output


def test_a_second_run_recaps_nothing_changed() -> None:
    """Run again on a finished journal: no step changed, nothing retried, a second recap event."""
    _simulate("--nodes", "2")
    code, out = _simulate("--nodes", "2")
    assert code == 0
    assert all(out["recap"]["totals"][k] == 0 for k in ("changed", "retried", "failed", "waiting"))
    assert len(_events(kinds.RUN_RECAP)) == 2


def test_retries_and_a_failed_node_are_counted_per_node() -> None:
    """Transient faults show as retried; a permanent fault makes its node failed=1, the others not."""
    code, out = _simulate("--nodes", "3", "--faults", "transient=0.03,permanent=lock_bios@pexip-conf-00002,seed=2")
    assert code == 1
    nodes = out["recap"]["nodes"]
    assert nodes["pexip-conf-00002"]["failed"] == 1
    assert nodes["pexip-mgr"]["failed"] == nodes["pexip-conf-00001"]["failed"] == 0
    retried = _events(kinds.STEP_RETRY)
    assert sum(n["retried"] for n in nodes.values()) == len(retried) > 0


def test_the_text_recap_names_every_node_in_full() -> None:
    """Without --json the run ends with a RECAP block: one line per node, the totals, then the outcome."""
    result = CliRunner().invoke(cli, ["simulate", "--nodes", "2"], catch_exceptions=False)
    lines = result.stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("RECAP ")))
    assert lines[start + 1].startswith("pexip-mgr ") and lines[start + 2].startswith("pexip-conf-00001 ")
    assert all(f"{k}=" in lines[start + 1] for k in COUNTS)
    assert "2 node(s):" in lines[start + 3] and "step(s) changed" in lines[start + 3]
    assert lines[-1] == "done: every node reached its target state"
    quiet = CliRunner().invoke(cli, ["-q", "simulate", "--nodes", "2"], catch_exceptions=False)
    assert "RECAP" not in quiet.stdout


async def test_nodes_that_changed_the_same_steps_share_one_list(sim: Any) -> None:
    """Three Conferencing Nodes changing the same steps hold one list of them; the journaled recap is unchanged."""
    report, _ = await simulate(sim)
    rows = [row for name, row in report.recap["nodes"].items() if name != "pexip-mgr"]
    assert len(rows) == 3 and rows[0]["steps_changed"]
    assert all(row["steps_changed"] is rows[0]["steps_changed"] for row in rows)
    assert report.recap["nodes"]["pexip-mgr"]["steps_changed"] != rows[0]["steps_changed"]
    with Journal.open(sim.journal, readonly=True) as journal:
        (event,) = [e for e in journal.events() if e.kind == kinds.RUN_RECAP]
    assert event.payload == json.loads(json.dumps(report.recap))
