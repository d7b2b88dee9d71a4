"""The daemon's parts in-process (fast): the node queue, sd_notify, the [daemon] section."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.load import load_deployment
from orchestrator.daemon import NodeQueue, notify, watchdog_period


async def test_the_queue_deduplicates_and_requeues_a_name_queued_while_processed() -> None:
    queue = NodeQueue()
    for name in ("a", "b", "a", "a"):
        queue.add(name)
    assert len(queue) == 2
    first = await queue.get()
    assert first == "a"
    queue.add("a")  # an event while "a" is reconciled: once more afterwards, never at the same time
    assert await queue.get() == "b"
    assert len(queue) == 0
    queue.done("a")
    assert await asyncio.wait_for(queue.get(), 1) == "a"


async def test_add_after_is_superseded_by_an_add_now_and_dropped_on_close() -> None:
    queue = NodeQueue()
    queue.add_after("a", 60)
    queue.add_after("a", 0.01)  # the sooner one wins
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    queue.done("a")
    queue.add_after("b", 60)
    queue.add("b")  # an event: now, not in 60 s
    assert await asyncio.wait_for(queue.get(), 1) == "b"
    queue.done("b")
    queue.add_after("c", 0.01)
    queue.close()
    await asyncio.sleep(0.05)
    assert len(queue) == 0 and queue.statistics()["scheduled"] == 0


def test_notify_writes_to_the_socket_and_is_a_no_op_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert notify("READY=1") is True
        assert sock.recv(100) == b"READY=1"


def test_watchdog_period_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_period() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    assert watchdog_period() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_period() is None


def test_daemon_section_is_read_and_a_bad_period_names_the_field(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from orchestrator.cli import cli

    config = tmp_path / "o.toml"
    assert CliRunner().invoke(cli, ["init", "--sim", str(config)]).exit_code == 0
    base = config.read_text()
    config.write_text(base + "\n[daemon]\nresync_s = 30\n")
    deployment = load_deployment(config)
    assert deployment.daemon.resync_s == 30.0 and deployment.daemon.gate_recheck_s == 5.0
    config.write_text(base + "\n[daemon]\nresync_s = 0\n")
    with pytest.raises(ConfigError) as refused:
        load_deployment(config)
    assert "daemon.resync_s" in str(refused.value) and "> 0" in str(refused.value)
