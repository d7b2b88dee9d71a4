"""The dry-run plan as Terraform shows one (summary, markers, TOML values, known-after rows, gates), and saved plans
applied exactly or refused (world, configuration or plan file changed)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator._format_plan import plan_lines, toml_value
from orchestrator._plan import Plan
from orchestrator.cli import cli
from tests.orchestrator.cli_helpers import SECRETS, sim_config, sim_env

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "example.toml"
SUMMARY = re.compile(
    r"^Plan: (\d+) nodes?, (\d+) steps? to change, (\d+) unknown until earlier steps run, (\d+) gates? to open"
)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example deployment with every system simulated, in its own directory (the world file beside it)."""
    sim_env(tmp_path, monkeypatch)
    path = sim_config(tmp_path)  # the same simulated example as the CLI tests (test_cli.env)
    return path


def _cli(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["-c", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*"))


def _committed(journal: Path) -> dict[str, list[str]]:
    """The steps each node committed, in order, read from the journal file itself."""
    out: dict[str, list[str]] = {}
    with sqlite3.connect(journal) as conn:
        for node, step in conn.execute("SELECT node, step FROM events WHERE kind = 'step_committed' ORDER BY seq"):
            out.setdefault(node, []).append(step)
    return out


def test_fresh_plan_has_the_summary_markers_known_after_rows_and_gates(config: Path) -> None:
    """A fresh deployment: one create (+), the rest known after deploy_ova or the Management Node, one gate."""
    code, out, err = _cli(config, "run", "--dry-run")
    assert code == 0, err
    assert SUMMARY.match(out.splitlines()[-1]).groups() == ("4", "1", "54", "1")  # type: ignore[union-attr]
    assert "  + deploy_ova" in out and '+ vm = "pexip-mgr on esxi-01.example.com' in out
    assert "(known after deploy_ova)" in out and "(known after pexip-mgr: hardened)" in out
    assert 'ocsp_responder_url = "http://ocsp.example.com"' in out  # the values a known-after step will set
    assert "enable_ssh = false" in out  # TOML booleans, not Python's
    assert "None" not in out and "'" not in out.replace("VM's", "")  # no Python reprs
    assert "error" not in out.lower().replace("! error", "")  # nothing unknown is called an error
    assert "pexip-mgr: security_wizard: approve it: orchestrator approve pexip-mgr security_wizard" in out


def test_half_done_plan_starts_where_the_journal_stands(config: Path) -> None:
    """After a run stopped at the gate, the plan starts at the security wizard: an update (~), gated."""
    assert _cli(config, "run", "-q")[0] == 3
    code, out, err = _cli(config, "run", "--dry-run")
    assert code == 0, err
    assert "deploy_ova" not in out.split("pexip-conf-01:")[0]
    assert re.search(r"  ~ security_wizard +\[hardened\]  stops at gate security_wizard", out)
    assert '~ security_wizard = "not run" -> {' in out and "enable_fips_140_2_compliance_mode = true" in out
    code, out, _ = _cli(config, "run", "--dry-run", "--json")
    plan = json.loads(out)
    assert plan["summary"]["change"] == 1 and plan["summary"]["gates"] == 1
    assert plan["gates"][0] == {
        "node": "pexip-mgr",
        "gate": "security_wizard",
        "step": "security_wizard",
        "how": "approve it: orchestrator approve pexip-mgr security_wizard --by WHO --reason TEXT",
    }
    assert plan["bound"]["journal_head"]["seq"] > 0


def test_a_dry_run_writes_nothing_and_with_o_only_the_plan(config: Path) -> None:
    """Without -o the directory is unchanged; with -o PLAN the plan file is the only new file."""
    before = _files(config.parent)
    assert _cli(config, "run", "--dry-run")[0] == 0
    assert _files(config.parent) == before
    code, _out, err = _cli(config, "run", "--dry-run", "-o", "plan.json")
    assert code == 0, err
    assert _files(config.parent) == sorted([*before, Path("plan.json")])
    text = (config.parent / "plan.json").read_text()
    assert not [name for name, value in SECRETS.items() if value in text]


def test_a_saved_plan_applied_runs_exactly_the_planned_steps(config: Path) -> None:
    """run --plan takes the plan's nodes and --until: the journal's committed steps are the planned ones."""
    assert _cli(config, "run", "--dry-run", "--until", "installed", "-o", "plan.json")[0] == 0
    planned = json.loads((config.parent / "plan.json").read_text())["plan"]
    wanted = {
        n: [r["step"] for r in rows if r["status"] not in ("ok", "blocked")] for n, rows in planned["nodes"].items()
    }
    code, out, err = _cli(config, "run", "--plan", "plan.json", "-q")
    # The Conferencing Nodes stay blocked, as planned: on a manager stopped at --until, not on a gate.
    assert code == 1 and out.splitlines()[-1].startswith("blocked: 3 nodes wait"), out + err
    assert _committed(config.parent / "orchestrator.journal.sqlite") == {n: s for n, s in wanted.items() if s}
    assert wanted["pexip-mgr"][-1] == "verify_admin_login" and all(
        r["status"] == "blocked" for r in planned["nodes"]["pexip-conf-01"]
    )
    code, _out, err = _cli(config, "run", "--plan", "plan.json")  # applied once: the journal has moved on
    assert code == 2 and "--journal: the journal moved on since the plan was made" in err


def test_a_saved_plan_is_refused_after_the_world_changed(config: Path) -> None:
    """Someone changed the simulated world after the plan: refused, exit 2, naming the world; nothing written."""
    from adapters.sim.world import SimWorld

    assert _cli(config, "run", "--dry-run", "-o", "plan.json")[0] == 0

    async def touch() -> None:
        world = SimWorld.open(config.parent / "orchestrator.world.sqlite")
        await world.apply([("vsphere", "someone-elses-vm", {"name": "someone-elses-vm"})])
        await world.aclose()

    asyncio.run(touch())
    code, _out, err = _cli(config, "run", "--plan", "plan.json")
    assert code == 2
    assert "simulation.world: the simulated world changed since the plan was made" in err
    assert "refused, nothing done" in err
    assert not (config.parent / "orchestrator.journal.sqlite").exists()


def test_a_saved_plan_is_refused_after_the_configuration_changed_but_not_after_a_comment(config: Path) -> None:
    """A changed value refuses the plan (naming the configuration); a comment leaves its canonical form alone."""
    assert _cli(config, "run", "--dry-run", "--until", "deployed", "-o", "plan.json", "pexip-mgr")[0] == 0
    config.write_text(config.read_text().replace("ocsp.example.com", "ocsp2.example.com"))
    code, _out, err = _cli(config, "run", "--plan", "plan.json")
    assert code == 2 and "-c/--config: the configuration changed since the plan was made" in err
    assert "world" not in err  # only what changed is named
    config.write_text(
        "# reviewed by the change board\n" + config.read_text().replace("ocsp2.example.com", "ocsp.example.com")
    )
    code, out, err = _cli(config, "run", "--plan", "plan.json", "-q")
    assert code == 0, out + err


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p["plan"]["nodes"]["pexip-mgr"].pop(),  # a step removed from the plan
        lambda p: p["plan"].update(until="ldap_authenticated"),  # the run made to go further
        lambda p: p.update(orchestrator_version="0.0.1"),  # the version forged
    ],
)
def test_an_edited_plan_file_is_refused(config: Path, edit: object) -> None:
    """Any change to the saved plan's content breaks its content hash: exit 2, nothing run."""
    assert _cli(config, "run", "--dry-run", "--until", "deployed", "-o", "plan.json")[0] == 0
    path = config.parent / "plan.json"
    document = json.loads(path.read_text())
    edit(document)  # type: ignore[operator]
    path.write_text(json.dumps(document))
    code, _out, err = _cli(config, "run", "--plan", "plan.json")
    assert code == 2 and "plan.json was changed after it was written" in err
    assert not (config.parent / "orchestrator.journal.sqlite").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "-o", "plan.json"], "use it with --dry-run"),  # -o saves a plan: only a dry run makes one
        (["run", "--plan", "plan.json", "pexip-mgr"], "the plan names its nodes and --until"),
        (["run", "--plan", "plan.json", "--until", "deployed"], "the plan names its nodes and --until"),
        (["run", "--plan", "plan.json", "--dry-run"], "a dry run makes one"),
    ],
)
def test_plan_options_that_do_not_go_together_are_bad_input(config: Path, args: list[str], message: str) -> None:
    """-o without --dry-run, --plan with NODE, --until or --dry-run: exit 2 saying why."""
    (config.parent / "plan.json").write_text("{}")
    code, _out, err = _cli(config, *args)
    assert code == 2 and message in err


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ('a "quoted" name', '"a \\"quoted\\" name"'),  # a TOML basic string, escaped
        (True, "true"),  # TOML booleans
        (None, "null"),  # nothing (TOML has no null; the plan says so)
        ([1, "b"], '[1, "b"]'),  # an array
        ({"port": 6514, "a.b": "x"}, '{ port = 6514, "a.b" = "x" }'),  # an inline table, odd keys quoted
    ],
)
def test_values_are_written_as_toml(value: object, text: str) -> None:
    """Values in the plan are TOML values, never Python reprs."""
    assert toml_value(value) == text


def test_a_status_this_module_does_not_know_is_shown_as_it_comes() -> None:
    """A row added by another check (drift on a done node) shows its status, reason and changes."""
    plan = Plan(
        nodes={
            "pexip-mgr": [
                {
                    "milestone": "hardened",
                    "step": "global_settings",
                    "status": "drift",
                    "reason": "changed outside the orchestrator",
                    "changes": [{"field": "global.enable_ssh", "now": True, "wanted": False, "action": "update"}],
                }
            ]
        }
    )
    lines = plan_lines(plan)
    assert "  * global_settings [hardened]  drift: changed outside the orchestrator" in lines
    assert "      ~ global.enable_ssh = true -> false" in lines
    assert lines[-1].startswith(
        "Plan: 1 node, 0 steps to change, 0 unknown until earlier steps run, 0 gates to open, 1 other"
    )


def test_events_recorded_between_the_check_and_the_run_refuse_the_plan(tmp_path: Path) -> None:
    """Only the run's own opening records may follow the plan's journal head; a node's event refuses it."""
    from config.errors import ConfigError
    from journal import kinds
    from orchestrator import api
    from orchestrator._saved_plan import check_opened

    with api.open_journal(tmp_path / "j.sqlite") as journal:
        journal.ensure_nodes([("pexip-mgr", "management", "new")])
        head = json.loads(journal.get_meta("head") or '{"seq": 0}')
        document = {"created_at": "2000-01-01T00:00:00+00:00", "plan": {"bound": {"journal_head": head}}}
        journal.record(node=None, kind=kinds.RUN_STARTED, actor="me", payload={})
        check_opened(document, journal)  # the run's own opening record: fine
        journal.record(node="pexip-mgr", kind=kinds.MAINTENANCE_ON, actor="someone", payload={})
        with pytest.raises(ConfigError, match=r"1 event\(s\) were recorded since the plan was made, the first "):
            check_opened(document, journal)


async def test_a_failed_node_is_planned_as_left_where_it_is(tmp_path: Path) -> None:
    """`run` does not retry a failed node: its rows say so (blocked, with the resume command), no step is planned."""
    from adapters.sim.world import SimWorld
    from config.load import simulated_deployment
    from orchestrator import api
    from orchestrator.clock import FakeClock

    sim = api.SimulationSettings(
        nodes=3,
        world=tmp_path / "w.sqlite",
        journal=tmp_path / "j.sqlite",
        faults="permanent=lock_bios@pexip-conf-00002",
    )
    report, _ = await api.simulate(sim, clock=FakeClock())
    assert report.exit_code == 1
    deployment = simulated_deployment(3, Path(f"{sim.world}.d"))
    with api.open_readonly_journal(sim.journal) as journal:
        world = SimWorld.open(sim.world)
        try:
            plan = await api.plan_steps(deployment, journal, world=world)
        finally:
            await world.aclose()
    rows = plan.nodes["pexip-conf-00002"]
    assert rows and {r["status"] for r in rows} == {"blocked"}
    assert "`orchestrator resume pexip-conf-00002` retries it" in rows[0]["reason"]
    assert plan.steps()["pexip-conf-00002"] == [] and plan.summary()["error"] == 0


def test_a_plan_that_cannot_be_written_is_bad_input(config: Path) -> None:
    """-o into a directory that does not exist: exit 2 naming -o, nothing written."""
    before = _files(config.parent)
    code, _out, err = _cli(config, "run", "--dry-run", "-o", "no/such/dir/plan.json")
    assert code == 2 and "-o: cannot write the plan to no/such/dir/plan.json" in err
    assert _files(config.parent) == before


def test_the_json_plan_keeps_its_documented_shape(config: Path) -> None:
    """run --dry-run --json: the keys the README documents, for the plan, its summary, rows, changes and bindings."""
    code, out, err = _cli(config, "run", "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert set(plan) == {"deployment", "until", "selected", "summary", "gates", "nodes", "bound"}
    assert set(plan["summary"]) == {"nodes", "change", "unknown", "ok", "error", "blocked", "other", "gates"}
    first, second = plan["nodes"]["pexip-mgr"][:2]
    assert first == {
        "milestone": "deployed",
        "step": "deploy_ova",
        "status": "change",
        "changes": [
            {
                "field": "vm",
                "now": None,
                "wanted": "pexip-mgr on esxi-01.example.com, portgroup Pexip-VLAN100 (VLAN 100)",
                "action": "create",
            }
        ],
    }
    assert set(second) == {"milestone", "step", "status", "known_after", "will_set"}
    assert set(plan["bound"]) == {
        "configuration_sha256",
        "policy_sha256",
        "observed_sha256",
        "world_sha256",
        "journal_head",
    }


async def test_a_conferencing_nodes_certified_steps_are_blocked_while_the_manager_does_not_trust_the_ca(
    tmp_path: Path,
) -> None:
    """Every node at hardened, the Manager not in this run: a Conferencing Node's certified rows (and those after)
    are blocked on the Manager's trusted_ca_chain, as the run stops there."""
    from adapters.sim.world import SimWorld
    from config.load import simulated_deployment
    from journal import Journal
    from orchestrator import api
    from tests.orchestrator.conftest import run_on

    deployment = simulated_deployment(2, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "w.sqlite")
    try:
        with Journal.open(tmp_path / "j.sqlite") as journal:
            assert (await run_on(deployment, journal, world, until="hardened")).exit_code == 0
            plan = await api.plan_steps(deployment, journal, world=world, nodes=["pexip-conf-00001"])
    finally:
        await world.aclose()
    rows = plan.nodes["pexip-conf-00001"]
    blocked = [r for r in rows if r["status"] == "blocked"]
    assert [r["milestone"] for r in blocked] == ["certified"] * 3 + ["ldap_authenticated"], rows
    assert blocked[0]["reason"] == "waits for pexip-mgr: trusted_ca_chain, and it is not among the nodes of this run"
