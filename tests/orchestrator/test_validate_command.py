"""`orchestrator validate`: every problem in one report, exit 2 or 0, and nothing created or changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.toml"


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def _copy_example(tmp_path: Path) -> Path:
    target = tmp_path / "site.toml"
    shutil.copy(EXAMPLE, target)
    return target


def test_validate_offline_accepts_the_example_and_writes_nothing(tmp_path: Path) -> None:
    config = _copy_example(tmp_path)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["-c", str(config), "validate", "--offline", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out == {
        "config": str(config.resolve()),
        "deployment": out["deployment"],
        "nodes": out["nodes"],
        "offline": True,
        "problems": [],
        "valid": True,
    }
    assert out["nodes"] > 0
    assert _snapshot(tmp_path) == before


def test_validate_lists_every_problem_at_once_and_exits_2(tmp_path: Path) -> None:
    config = _copy_example(tmp_path)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["validate", "-c", str(config), "--json"], catch_exceptions=False)
    assert result.exit_code == 2
    fields = [p["field"] for p in json.loads(result.stdout)["problems"]]
    # secrets, files and real-mode availability come in one report, not in rounds
    assert "vcenter.password" in fields and "ova.management" in fields and "pki.ca_chain" in fields
    assert _snapshot(tmp_path) == before


def test_validate_names_structure_problems_with_their_field(tmp_path: Path) -> None:
    config = _copy_example(tmp_path)
    text = config.read_text()
    config.write_text(text.replace("[vcenter]", "[vcenter]\nbogus_key = 1", 1))
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["-c", str(config), "validate", "--offline"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "problem(s):" in result.stderr and "vcenter.bogus_key" in result.stderr
    assert _snapshot(tmp_path) == before


def test_validate_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-c", str(tmp_path / "nope.toml"), "validate"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "-c/--config" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_config_reference_and_schema_commands() -> None:
    from config.reference import FIELDS, markdown

    runner = CliRunner()
    rows = json.loads(runner.invoke(cli, ["config", "reference", "--json"], catch_exceptions=False).stdout)
    assert [r["key"] for r in rows] == [f.key for f in FIELDS]
    assert {r["key"] for r in rows if r["secret"]} >= {"vcenter.password", "snmp.privacy_password"}
    assert runner.invoke(cli, ["config", "reference", "--markdown"]).stdout == markdown()
    text = runner.invoke(cli, ["config", "reference"]).stdout
    assert "vcenter.hosts[].datastore_iops_capacity  (integer; required)" in text
    schema = json.loads(runner.invoke(cli, ["config", "schema"], catch_exceptions=False).stdout)
    assert schema["properties"]["console"]["properties"]["mode"]["enum"] == ["real", "sim"]
