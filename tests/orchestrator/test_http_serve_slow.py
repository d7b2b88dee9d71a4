"""`orchestrator serve` as a process, scraped by a real Prometheus and rendered by headless chromium (slow)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        text: str = r.read().decode()
        return text


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["simulate", "--nodes", "2", "--faults", "permanent=snmpv3@pexip-mgr"])
    assert result.exit_code == 1, result.output
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "serve", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a bound on a hang, not on how soon (it counted 100 tries of 0.1 s)
        while True:
            try:
                _get(url + "/healthz")
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "serve never answered /healthz\n" + log.read_text()
                time.sleep(0.1)
        yield url, log
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_answers_and_prometheus_scrapes_it(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    assert json.loads(_get(url + "/api/nodes/pexip-mgr"))["state"] == "failed"
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed")
    port = _free_port()
    (tmp_path / "prom.yml").write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: orch\n    static_configs:\n"
        f"      - targets: ['{url.removeprefix('http://')}']\n"
    )
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prom.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        query = f"http://127.0.0.1:{port}/api/v1/query?query=orchestrator_nodes"
        series: list[dict[str, object]] = []
        deadline = time.monotonic() + 180  # prometheus's start and first scrapes: a bound on a hang, not on how soon
        while time.monotonic() < deadline:
            try:
                series = json.loads(_get(query))["data"]["result"]
            except OSError:
                pass
            if series:
                break
            time.sleep(0.5)
        states = {s["metric"]["state"]: s["value"][1] for s in series}  # type: ignore[index]
        assert states.get("failed") == "1", series
    finally:
        prom.terminate()
        prom.wait(10)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_chromium_shows_the_nodes_states(served: tuple[str, Path]) -> None:
    url, _ = served
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url + "/"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    dom = done.stdout
    assert 'id="node-pexip-mgr"' in dom, done.stderr[-2000:]
    row = dom.split('id="node-pexip-mgr"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="state">failed</td>' in row
    assert 'id="node-pexip-conf-00001"' in dom
