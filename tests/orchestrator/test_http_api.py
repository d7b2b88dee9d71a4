"""The HTTP API (issue #10 part 3) on 127.0.0.1 against a journal a small simulation made."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from config.secrets import Secret
from journal import Journal, kinds
from orchestrator._settings import SessionSettings
from orchestrator.cli import cli
from orchestrator.http import make_app

TOKEN = "tok-Secret-77a1"


@pytest.fixture
def journal_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 2-node simulation: the management node fails at snmpv3, the conferencing node stays new."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["simulate", "--nodes", "2", "--faults", "permanent=snmpv3@pexip-mgr"])
    assert result.exit_code == 1, result.output
    return tmp_path / "simulation.journal.sqlite"


class Served:
    def __init__(self, journal: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTP_TEST_TOKEN", TOKEN)
        self.app = make_app(SessionSettings(journal=journal), token=Secret("env:HTTP_TEST_TOKEN"))
        self.url = ""

    async def __aenter__(self) -> Served:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.runner.cleanup()


async def _get(url: str, **kw: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.request(kw.pop("method", "GET"), url, **kw) as r:
        return r.status, await r.text()


def test_endpoints_serve_the_status_data(journal_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        async with Served(journal_copy, monkeypatch) as srv:
            assert (await _get(srv.url + "/healthz"))[0] == 200
            assert (await _get(srv.url + "/readyz"))[0] == 200
            code, text = await _get(srv.url + "/api/nodes")
            nodes = {n["node"]: n for n in json.loads(text)["nodes"]}
            assert code == 200 and nodes["pexip-mgr"]["state"] == "failed"
            assert nodes["pexip-mgr"]["next"]["action"] == "stopped"
            code, text = await _get(srv.url + "/api/nodes/pexip-mgr")
            assert code == 200 and json.loads(text)["failed_from"] == "hardening"
            assert (await _get(srv.url + "/api/nodes/nope"))[0] == 404
            code, text = await _get(srv.url + "/metrics")
            assert code == 200
            assert 'orchestrator_nodes{state="failed"} 1.0' in text
            assert "orchestrator_step_failures_total 1.0" in text
            assert "orchestrator_step_duration_seconds_bucket" in text
            code, page = await _get(srv.url + "/")
            assert code == 200 and "pexip-mgr" in page and 'http-equiv="refresh"' in page
            assert TOKEN not in page and TOKEN not in text

    asyncio.run(go())


def test_approval_needs_the_token_and_is_journaled_with_identity(
    journal_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url_path = "/api/nodes/pexip-mgr/approvals"
    body = {"gate": "security_wizard", "reason": "CHG-42"}

    async def go() -> list[tuple[int, str]]:
        async with Served(journal_copy, monkeypatch) as srv:
            out = [await _get(srv.url + url_path, method="POST", json=body)]
            out.append(await _get(srv.url + url_path, method="POST", json=body, headers={"Authorization": "Bearer no"}))
            auth = {"Authorization": f"Bearer {TOKEN}"}
            out.append(await _get(srv.url + url_path, method="POST", json={"gate": "x"}, headers=auth))
            out.append(await _get(srv.url + url_path, method="POST", json=body, headers=auth))
            return out

    anon, wrong, bad, ok = asyncio.run(go())
    assert anon[0] == 401 and wrong[0] == 401
    assert bad[0] == 400 and "not an approval gate" in bad[1]
    assert ok[0] == 201, ok
    assert all(TOKEN not in text for _, text in (anon, wrong, bad, ok))
    with Journal.open(journal_copy, readonly=True) as journal:
        opened = [e for e in journal.events(node="pexip-mgr", kinds=[kinds.GATE_OPENED])]
    mine = [e for e in opened if e.actor == "http-token:env:HTTP_TEST_TOKEN"]  # the simulation approved once itself
    assert len(mine) == 1 and mine[0].seq == json.loads(ok[1])["seq"]
    assert mine[0].payload["reason"] == "CHG-42"


def test_page_escapes_values() -> None:
    from orchestrator.http._page import render

    row = {"node": "<b>x</b>", "role": "r", "state": "s", "step": None, "gate": None, "last_error": "a&b"}
    html = render("j", [{**row, "next": {"action": "wait", "reason": '"q"'}}])
    assert "<b>x" not in html and "&lt;b&gt;x" in html and "a&amp;b" in html and "&quot;q&quot;" in html


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_metrics(journal_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> str:
        async with Served(journal_copy, monkeypatch) as srv:
            return (await _get(srv.url + "/metrics"))[1]

    text = asyncio.run(go())
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_http_section_parses_and_bad_listen_names_the_field(tmp_path: Path) -> None:
    from config.errors import ConfigError
    from config.load import load_deployment

    root = Path(__file__).resolve().parents[2]
    text = (root / "config" / "example.toml").read_text()
    good = tmp_path / "good.toml"
    good.write_text(text + '\n[http]\nlisten = "127.0.0.1:9999"\ntoken = "env:HTTP_TEST_TOKEN"\n')
    spec = load_deployment(good, check_secrets=False).http
    assert (spec.listen, spec.token and spec.token.ref, spec.tls_cert) == (
        "127.0.0.1:9999",
        "env:HTTP_TEST_TOKEN",
        None,
    )
    assert TOKEN not in repr(spec)
    bad = tmp_path / "bad.toml"
    bad.write_text(text + '\n[http]\nlisten = "nowhere"\n')
    with pytest.raises(ConfigError, match=r"http\.listen.*HOST:PORT"):
        load_deployment(bad, check_secrets=False)
