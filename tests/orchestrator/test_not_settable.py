"""A setting this Manager's version cannot take (absent or read-only in its /schema/, as `legacy_api_http` and
`ldap_permit_no_tls` on v41) is reported "not settable on this version" in the step's record, never done
(pexip-api.md 7.9: unknown keys in a write are ignored, not refused)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.sim import _pexip_schema
from orchestrator.cli import cli


def _committed(journal: Path, step: str) -> list[dict[str, object]]:
    with sqlite3.connect(journal) as db:
        rows = db.execute(
            "SELECT payload FROM events WHERE kind = 'step_committed' AND step = ? ORDER BY seq", (step,)
        ).fetchall()
    return [json.loads(p) for (p,) in rows]


def _simulate(tmp_path: Path) -> int:
    args = ["--journal", str(tmp_path / "j.sqlite"), "simulate", "--nodes", "1", "--latency", "0"]
    args += ["--world", str(tmp_path / "w.sqlite")]
    return CliRunner().invoke(cli, args, catch_exceptions=False).exit_code


def test_a_setting_the_version_ignores_is_reported_not_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The twin's `global` schema lists enable_ssh read-only: it is neither patched nor reported changed."""
    resource = _pexip_schema.RESOURCES["global"]
    fields = {**resource.fields, "enable_ssh": dataclasses.replace(resource.fields["enable_ssh"], read_only=True)}
    monkeypatch.setitem(_pexip_schema.RESOURCES, "global", dataclasses.replace(resource, fields=fields))
    assert _simulate(tmp_path) == 0
    [payload] = _committed(tmp_path / "j.sqlite", "global_settings")
    assert payload["not_settable"] == ["global.enable_ssh"]
    assert "global.enable_ssh" not in {c["field"] for c in payload["changed"]}  # type: ignore[union-attr]
    assert {c["field"] for c in payload["changed"]} >= {"global.enable_chat"}  # type: ignore[union-attr]


def test_a_version_that_takes_every_setting_reports_none(tmp_path: Path) -> None:
    assert _simulate(tmp_path) == 0
    [payload] = _committed(tmp_path / "j.sqlite", "global_settings")
    assert "not_settable" not in payload
    assert "global.enable_ssh" in {c["field"] for c in payload["changed"]}  # type: ignore[union-attr]


def test_the_plan_shows_a_setting_the_version_cannot_take(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dry run shows the step even when nothing else changes there, and names the setting it cannot take."""
    from orchestrator._format_plan import plan_lines
    from orchestrator._plan import Plan

    row = {"milestone": "hardened", "step": "global_settings", "status": "ok", "changes": []}
    plan = Plan(deployment="d", until="ldap_authenticated", selected=None)
    plan.nodes = {"pexip-mgr": [{**row, "not_settable": ["global.legacy_api_http"]}]}
    text = "\n".join(plan_lines(plan))
    assert "  = global_settings [hardened]" in text
    assert "global.legacy_api_http: not settable on this version" in text


def test_status_shows_what_the_version_could_not_take(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`status NODE` and `status --json` name the setting left out of the write, by step; the plain table of every
    node does not read the step records (start-up, #11) and says nothing of it."""
    resource = _pexip_schema.RESOURCES["global"]
    fields = {**resource.fields, "enable_ssh": dataclasses.replace(resource.fields["enable_ssh"], read_only=True)}
    monkeypatch.setitem(_pexip_schema.RESOURCES, "global", dataclasses.replace(resource, fields=fields))
    assert _simulate(tmp_path) == 0
    journal = ["--journal", str(tmp_path / "j.sqlite")]
    one = CliRunner().invoke(cli, [*journal, "status", "pexip-mgr"], catch_exceptions=False)
    assert one.exit_code == 0, one.output
    line = "pexip-mgr: global_settings: global.enable_ssh: not settable on this version (left out of the write)"
    assert line in one.output
    rows = json.loads(CliRunner().invoke(cli, [*journal, "status", "--json"], catch_exceptions=False).stdout)["nodes"]
    assert {r["node"]: r["not_settable"] for r in rows} == {"pexip-mgr": {"global_settings": ["global.enable_ssh"]}}
    every = CliRunner().invoke(cli, [*journal, "status"], catch_exceptions=False)
    assert every.exit_code == 0 and "not settable" not in every.output


def test_a_later_commit_that_took_every_setting_clears_the_step(tmp_path: Path) -> None:
    """Each step's last commit counts: after an upgrade the step is re-applied and the setting is taken."""
    from journal import Journal
    from orchestrator._journal_api import status

    with Journal.open(tmp_path / "j.sqlite") as j:
        j.ensure_nodes([("mgr", "management", "deployed"), ("conf-1", "conferencing", "deployed")])
        for payload in ({"changed": [], "not_settable": ["global.legacy_api_http"]}, {"changed": []}):
            j.record(node="mgr", kind="step_committed", step="global_settings", payload=payload)
        j.record(node="mgr", kind="step_committed", step="ldap", payload={"not_settable": ["ldap.permit_no_tls"]})
        assert status(j, "mgr")[0]["not_settable"] == {"ldap": ["ldap.permit_no_tls"]}
        assert [r.get("not_settable") for r in status(j, not_settable=True)] == [{"ldap": ["ldap.permit_no_tls"]}, {}]
        assert "not_settable" not in status(j)[0]  # the plain table's rows
