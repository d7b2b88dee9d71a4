"""The daemon's HTTP API with [http] token and TLS configured (fast, in-process, sim): approvals over HTTPS."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from journal import Journal, kinds
from orchestrator.daemon import Reconciler
from orchestrator.lab._pki import make_test_pki
from tests.orchestrator.test_daemon_parts import _embedded, _starter

TOKEN = "daemon-Tok-91fe"
MANAGER = "pexip-mgmt"


async def test_approvals_over_https_need_the_bearer_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anonymous and wrong-token approvals get 401 and open nothing; the token's opens the gate, journaled with
    the token's identity, and the daemon drives the Manager on; plain HTTP is not served; /metrics shows the
    daemon's journal commit latency."""
    pki = make_test_pki(tmp_path / "pki", name="http")
    monkeypatch.setenv("DAEMON_TEST_TOKEN", TOKEN)
    config = _starter(tmp_path)
    config.write_text(
        config.read_text()
        + f'\n[http]\ntoken = "env:DAEMON_TEST_TOKEN"\ntls_cert = "{pki.cert_file}"\ntls_key = "{pki.key_file}"\n'
    )
    urls: list[str] = []
    seen: dict[str, Any] = {}
    trust = ssl.create_default_context(cafile=str(pki.ca_file))

    async def post(session: aiohttp.ClientSession, headers: dict[str, str]) -> tuple[int, str]:
        body = {"gate": "security_wizard", "reason": "CHG-7"}
        async with session.post(f"{urls[0]}/api/nodes/{MANAGER}/approvals", json=body, headers=headers) as r:
            return r.status, await r.text()

    async def approve(r: Reconciler) -> None:
        while r.generation.engine.state_of(MANAGER) != "awaiting_approval":
            await asyncio.sleep(0.02)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
            seen["anonymous"] = await post(session, {})
            seen["wrong"] = await post(session, {"Authorization": "Bearer not-it"})
            seen["gate_after_refusals"] = r.journal.last_event(MANAGER, kind=kinds.GATE_OPENED)
            seen["ok"] = await post(session, {"Authorization": f"Bearer {TOKEN}"})
            async with session.get(f"{urls[0]}/metrics") as got:
                seen["metrics"] = await got.text()
        async with aiohttp.ClientSession() as plain:
            with pytest.raises(aiohttp.ClientError):
                async with plain.get(urls[0].replace("https://", "http://") + "/healthz") as _:
                    pass

    def past_the_gate(r: Reconciler) -> bool:
        return "ok" in seen and r.generation.engine.state_of(MANAGER) not in ("installed", "awaiting_approval")

    r = await _embedded(config, past_the_gate, approve, ready=urls.append)
    assert urls[0].startswith("https://127.0.0.1:")
    assert seen["anonymous"][0] == 401 and seen["wrong"][0] == 401
    assert seen["gate_after_refusals"] is None
    assert seen["ok"][0] == 201, seen["ok"]
    assert all(TOKEN not in text for _, text in (seen["anonymous"], seen["wrong"], seen["ok"]))
    with Journal.open(r.session.journal_path, readonly=True) as journal:
        # The approval's gate_opened (the node may be past its next gate, the CA's, by now).
        opened = [e for e in journal.events(node=MANAGER, kinds=[kinds.GATE_OPENED]) if e.step == "security_wizard"]
    assert [e.actor for e in opened] == ["http-token:env:DAEMON_TEST_TOKEN"]
    count = re.search(r"^orchestrator_journal_commit_seconds_count (\S+)$", seen["metrics"], re.M)
    assert count is not None and float(count.group(1)) > 0
    assert 'orchestrator_journal_commit_seconds_bucket{le="+Inf"}' in seen["metrics"]
