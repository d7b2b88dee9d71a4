"""The command line's conventions: --version, -q/-v, global options anywhere, help with examples and exit codes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from orchestrator import _format, _help
from orchestrator.cli import cli


def _invoke(*args: str, env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in group.commands.items():
        out.append((f"{prefix}{name}", cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix}{name} ")
    return out


@pytest.fixture
def simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A finished two-node simulation in tmp_path; its journal."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATOR_JOURNAL", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    assert _invoke("-q", "simulate", "--nodes", "2").exit_code == 0
    return tmp_path / "simulation.journal.sqlite"


def test_version_prints_the_installed_version() -> None:
    """`orchestrator --version` prints a version number and exits 0."""
    result = _invoke("--version")
    assert result.exit_code == 0
    assert re.fullmatch(r"orchestrator \S+\n", result.stdout), result.stdout


def test_global_options_work_before_and_after_the_subcommand(simulated: Path) -> None:
    """`status --journal J` and `--journal J status` give the same table."""
    before = _invoke("--journal", str(simulated), "status", "--json")
    after = _invoke("status", "--journal", str(simulated), "--json")
    assert before.exit_code == after.exit_code == 0, (before.output, after.output)
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert {n["node"] for n in json.loads(after.stdout)["nodes"]} == {"pexip-mgr", "pexip-conf-00001"}


def test_an_option_after_the_subcommand_wins_over_the_environment(simulated: Path, tmp_path: Path) -> None:
    """ORCHESTRATOR_JOURNAL names a missing file, `status --journal J` the real one: J is used."""
    nope = {"ORCHESTRATOR_JOURNAL": str(tmp_path / "nope")}
    result = _invoke("status", "--journal", str(simulated), "--json", env=nope)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["journal"] == str(simulated)
    # ... and one before the subcommand wins over the environment too, unless repeated after it.
    real = {"ORCHESTRATOR_JOURNAL": str(simulated)}
    missing = _invoke("--journal", str(tmp_path / "nope.sqlite"), "status", env=real)
    assert missing.exit_code == 2, missing.output


def test_simulate_honours_orchestrator_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`simulate` writes its journal where ORCHESTRATOR_JOURNAL says."""
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "elsewhere.sqlite"
    result = _invoke("simulate", "--nodes", "1", "--json", env={"ORCHESTRATOR_JOURNAL": str(target)})
    assert result.exit_code == 0, result.output
    assert target.is_file()
    assert not (tmp_path / "simulation.journal.sqlite").exists()


def test_quiet_prints_no_progress_and_verbose_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-q leaves only the outcome line; -v is accepted after the subcommand."""
    monkeypatch.chdir(tmp_path)
    quiet = _invoke("-q", "simulate", "--nodes", "1")
    assert quiet.exit_code == 0
    assert quiet.stdout.strip().splitlines() == ["done: every node reached its target state"]
    loud = _invoke("simulate", "--nodes", "1", "--fresh", "-v")
    assert loud.exit_code == 0
    assert "pexip-mgr: ldap_authenticated" in loud.stdout


def test_environment_variables_are_shown_in_help() -> None:
    """--help names ORCHESTRATOR_CONFIG and ORCHESTRATOR_JOURNAL, at the top and on a subcommand."""
    for args in (["--help"], ["status", "--help"], ["run", "--help"]):
        out = _invoke(*args).stdout
        assert "ORCHESTRATOR_CONFIG" in out and "ORCHESTRATOR_JOURNAL" in out, args


def test_every_command_has_help_examples_and_exit_codes() -> None:
    """Each command and group: help text, an Examples section and its exit codes in --help."""
    for name, cmd in [("", cli), *_commands(cli)]:
        assert cmd.help, name
        out = _invoke(*name.split(), "--help").stdout
        assert "Examples:\n" in out and "  $ orchestrator" in out, name
        assert "Exit codes:\n" in out and re.search(r"^\s+0\s+done", out, re.M), name
    top = _invoke("--help").stdout
    for code in _help.EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+\S", top, re.M), f"exit code {code} undocumented"


def test_summaries_are_never_cut() -> None:
    """No command list in --help ends a summary with '...' (at 80 columns)."""
    for name, cmd in [("", cli), *_commands(cli)]:
        if isinstance(cmd, click.Group):
            out = CliRunner().invoke(cli, [*name.split(), "--help"], terminal_width=80).stdout
            assert "..." not in out.split("Commands:")[1].split("Examples:")[0], name


def test_bad_faults_node_and_zero_concurrency_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--faults STEP@nosuchnode` and `--concurrency 0` exit 2 naming the option, and write nothing."""
    monkeypatch.chdir(tmp_path)
    bad_node = _invoke("simulate", "--nodes", "2", "--faults", "permanent=lock_bios@nosuchnode")
    assert bad_node.exit_code == 2
    assert "--faults" in bad_node.stderr and "nosuchnode" in bad_node.stderr and "pexip-mgr" in bad_node.stderr
    zero = _invoke("simulate", "--concurrency", "0")
    assert zero.exit_code == 2 and "--concurrency" in zero.stderr
    assert not list(tmp_path.iterdir())
    good = _invoke("simulate", "--nodes", "2", "--json", "--faults", "permanent=lock_bios@pexip-conf-00001")
    assert good.exit_code == 1, good.output


def test_status_fits_80_columns_with_full_node_names_lease_and_age() -> None:
    """The status table at 80 columns: no line wider, node names whole, lease and age shown."""
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    rows = [
        {
            "node": f"pexip-conferencing-node-{i:03d}.example.com",
            "role": "conferencing",
            "state": "vm_created",
            "step": "lock_bios",
            "gate": "bios_password" if i == 1 else None,
            "maintenance": False,
            "maintenance_reason": None,
            "lease": {"owner": "h:1", "pid": 4242, "since": "x"} if i == 2 else None,
            "updated_at": "2026-01-01T11:55:00+00:00",
            "next": {
                "action": "wait",
                "reason": "waits for the bios_password gate: orchestrator approve NODE bios_password",
            },
        }
        for i in range(3)
    ]
    console = Console(record=True, width=80)
    console.print(_format.status_table("/var/lib/orchestrator/journal.sqlite", rows, width=80, now=now))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for i in range(3):
        assert f"pexip-conferencing-node-{i:03d}.example.com" in text
    assert "lease pid 4242" in text and "5m ago" in text


@pytest.mark.parametrize("width", [80, 160])
def test_status_shows_markup_in_a_reason_or_path_as_written(width: int) -> None:
    """A maintenance note, a reason or a journal path with rich markup in it is shown as written: no tag
    vanishes, and a stray closing tag does not make the table raise."""
    rows = [
        {
            "node": "pexip-mgr",
            "role": "management",
            "state": "hardened",
            "step": None,
            "gate": None,
            "maintenance": True,
            "maintenance_reason": "[bold]disk swap[/] ticket [/]",
            "lease": None,
            "updated_at": None,
            "next": {"action": "skip", "reason": ""},
        },
        {
            "node": "pexip-conf-00001",
            "role": "conferencing",
            "state": "installed",
            "step": "harden_ssh",
            "gate": None,
            "maintenance": False,
            "maintenance_reason": None,
            "lease": None,
            "updated_at": None,
            "next": {"action": "retry", "reason": "refused: [red]no route[/red]"},
        },
    ]
    console = Console(record=True, width=width)
    console.print(_format.status_table("/srv/[x]/journal.sqlite", rows, width=width))
    text = "".join(console.export_text().split())  # the narrow table folds: compare without the spacing
    for shown in ("[bold]diskswap[/]ticket[/]", "refused:[red]noroute[/red]", "/srv/[x]/journal.sqlite"):
        assert shown in text


def test_lab_status_without_a_lab_says_how_to_start_one(tmp_path: Path) -> None:
    """`lab status` with no lab: how to start one, never `None`; --json keeps its keys."""
    result = _invoke("lab", "status", "--dir", str(tmp_path / "lab"))
    assert result.exit_code == 0
    assert "orchestrator lab up" in result.stdout and "None" not in result.stdout
    shape = json.loads(_invoke("lab", "status", "--dir", str(tmp_path / "lab"), "--json").stdout)
    assert shape["config"] is None and shape["vcenter"]["running"] is False


def test_lab_down_reset_removes_the_labs_journal_and_world_and_speaks_json(tmp_path: Path) -> None:
    """`lab down --reset --json` removes journal and world (with companions); binaries and PKI stay."""
    lab = tmp_path / "lab"
    (lab / "bin").mkdir(parents=True)
    (lab / "bin" / "vcsim").write_text("binary")
    for name in ("journal.sqlite", "journal.sqlite-wal", "world.sqlite"):
        (lab / name).write_text("x")
    (lab / "world.sqlite.d").mkdir()
    plain = json.loads(_invoke("lab", "down", "--dir", str(lab), "--json").stdout)
    assert plain == {"dir": str(lab.resolve()), "stopped": False, "was_up": False, "removed": []}
    assert (lab / "journal.sqlite").exists()
    reset = _invoke("lab", "down", "--dir", str(lab), "--reset", "--json")
    assert reset.exit_code == 0
    removed = json.loads(reset.stdout)["removed"]
    wanted = ["journal.sqlite", "journal.sqlite-wal", "world.sqlite", "world.sqlite.d"]
    assert sorted(Path(p).name for p in removed) == wanted
    assert sorted(p.name for p in lab.iterdir()) == ["bin"]
