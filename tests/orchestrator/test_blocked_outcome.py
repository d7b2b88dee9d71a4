"""A run whose only unfinished nodes are blocked on the Management Node: the outcome line and exit code say why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from journal import Journal, kinds
from machines.plan import Action, Blocked, Done, Held, RunStep, Stopped, Wait
from orchestrator import _format
from orchestrator.cli import cli
from orchestrator.engine import RunReport
from tests.orchestrator.cli_helpers import sim_config, sim_env

MGR, CONF = "pexip-mgr", "pexip-conf-01"
BLOCKED = Blocked("waits for the Management Node to be hardened before deployed (now new)")
GATE = "waiting on gate security_wizard; approve it: orchestrator approve pexip-mgr security_wizard --by WHO"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    sim_env(tmp_path, monkeypatch)
    return sim_config(tmp_path)


def _cli(config: Path, *args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["-c", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout.splitlines()


@pytest.mark.parametrize(
    ("manager", "code", "fragment"),
    [
        (Stopped("failed: vsphere: refused"), 1, f"which failed; fix the cause, then `orchestrator resume {MGR}`"),
        (Wait(GATE, gate="security_wizard"), 3, f"which is {GATE}; then `orchestrator resume --all`"),
        (Held("in maintenance"), 3, f"`orchestrator maintenance {MGR} off --by WHO`"),
        (RunStep("deployed: step deploy_ova", step="deploy_ova", milestone="deployed", last=True), 1, "not drive"),
        (Done("at installed (stopped at --until installed)"), 1, f"drive it first: `orchestrator run {MGR}`"),
    ],
)
def test_a_blocked_node_ends_as_what_it_waits_for(
    manager: Action, code: int, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Blocked behind a failed manager: 1; behind a gate or maintenance: 3; behind one not driven: 1, never "a gate"."""
    report = RunReport(outcomes={CONF: BLOCKED}, blocked_by=(MGR, manager))
    assert report.exit_code == code
    assert _format.report(report, as_json=False) == code
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"blocked: {CONF} waits for {MGR}") and fragment in last, last
    if not isinstance(manager, (Wait, Held)):
        assert "gate" not in last


def test_many_blocked_nodes_are_counted_and_named() -> None:
    """Four blocked nodes: the line counts them and names the first three."""
    names = [f"pexip-conf-0{i}" for i in range(1, 5)]
    report = RunReport(outcomes=dict.fromkeys(names, BLOCKED), blocked_by=(MGR, Stopped("failed")))
    assert _format._summary(report).startswith("blocked: 4 nodes wait (pexip-conf-01, pexip-conf-02, pexip-conf-03 (+1")


def test_running_a_conferencing_node_alone_says_to_drive_the_manager_first(config: Path) -> None:
    """`run pexip-conf-01` on a fresh deployment: nothing it can do; exit 1 and the manager to drive, not "a gate"."""
    code, lines = _cli(config, "run", CONF)
    assert code == 1, lines
    assert lines[-1].startswith(f"blocked: {CONF} waits for {MGR}, which this run did not drive far enough")
    assert f"{CONF}: blocked: waits for the Management Node to be hardened" in "\n".join(lines)


def test_behind_a_manager_at_its_gate_the_line_names_the_gate_and_its_command(config: Path) -> None:
    """The manager waits at the security-wizard gate; `run pexip-conf-01` exits 3 naming that gate's command."""
    assert _cli(config, "-q", "run", MGR)[0] == 3
    code, lines = _cli(config, "run", CONF)
    assert code == 3, lines
    assert lines[-1].startswith(f"blocked: {CONF} waits for {MGR}, which is waiting on gate security_wizard")
    assert f"orchestrator approve {MGR} security_wizard --by WHO" in lines[-1]


def test_the_recap_counts_the_gate_and_the_blocked_as_waiting_and_journals_it(config: Path) -> None:
    """A run to the wizard gate: the Manager waiting=1 with its changed steps, each blocked node waiting=1, none failed;
    the run_recap event holds the same counts."""
    result = CliRunner().invoke(cli, ["-c", str(config), "run", "--json"], catch_exceptions=False)
    assert result.exit_code == 3, result.output
    recap = json.loads(result.stdout)["recap"]
    assert recap["nodes"][MGR]["waiting"] == 1 and recap["nodes"][MGR]["failed"] == 0
    assert recap["nodes"][MGR]["changed"] == len(recap["nodes"][MGR]["steps_changed"]) > 0
    assert all(
        recap["nodes"][n]["waiting"] == 1 and recap["nodes"][n]["changed"] == 0 for n in recap["nodes"] if n != MGR
    )
    assert recap["totals"]["waiting"] == len(recap["nodes"]) and recap["totals"]["failed"] == 0
    with Journal.open(config.parent / "orchestrator.journal.sqlite", readonly=True) as journal:
        (event,) = [e for e in journal.events() if e.kind == kinds.RUN_RECAP]
    assert event.payload == recap


def test_a_run_left_in_maintenance_ends_saying_so_not_a_gate(capsys: pytest.CaptureFixture[str]) -> None:
    """Only a node in maintenance left: exit 3 (as documented) and a last line about maintenance, not a gate."""
    report = RunReport(outcomes={MGR: Held("in maintenance"), CONF: Done("at ldap_authenticated")})
    assert _format.report(report, as_json=False) == 3
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("in maintenance") and "maintenance NODE off" in last and "gate" not in last


def test_a_conferencing_node_waits_for_the_managers_certificates_before_its_own(config: Path) -> None:
    """The Manager in maintenance once hardened: a Conferencing Node goes on up to its certified milestone and
    waits there (the Manager trusts no CA yet: completing the node's CSR would consume it for a certificate the
    Manager does not recognise, and the node would fail asking for a new CSR). Once the Manager goes on, both end."""
    assert _cli(config, "-q", "run", MGR)[0] == 3  # at the security wizard's gate
    assert _cli(config, "-q", "approve", MGR, "security_wizard", "--by", "alice")[0] == 0
    assert _cli(config, "-q", "run", MGR, "--until", "hardened")[0] == 0
    assert _cli(config, "-q", "maintenance", MGR, "on", "--by", "bob", "--reason", "test")[0] == 0
    code, lines = _cli(config, "run")
    assert code == 3, lines
    assert f"{CONF}: blocked: waits for the Management Node's trusted_ca_chain before certified" in "\n".join(lines)
    with Journal.open(config.parent / "orchestrator.journal.sqlite", readonly=True) as journal:
        assert {row.state for row in journal.nodes()} == {"hardened"}  # the Manager and every Conferencing Node
    assert _cli(config, "-q", "maintenance", MGR, "off", "--by", "bob")[0] == 0
    assert _cli(config, "-q", "resume", "--all")[0] == 0
    with Journal.open(config.parent / "orchestrator.journal.sqlite", readonly=True) as journal:
        assert {row.state for row in journal.nodes()} == {"ldap_authenticated"}
        assert not list(journal.events(kinds=[kinds.STEP_FAILED]))
