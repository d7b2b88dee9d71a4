"""The daemon in-process (fast): the node queue, sd_notify, the [daemon] section, the reconciler embedded."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config.errors import ConfigError
from config.load import load_deployment
from machines.plan import Done
from orchestrator.daemon import NodeQueue, Reconciler, notify, watchdog_period

# Bounds on waits for an event, not on how soon it comes: far above what a loaded machine takes (one daemon
# test took 16 s beside 8 jobs), so that they only end a test that would otherwise hang. Whatever a test must
# not see happen within a bound (a timed resync, a backoff, an add_after to be superseded) is made longer still.
WAIT_S = 30.0
EMBEDDED_S = 300.0
LATER_S = 3600.0


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
    assert await asyncio.wait_for(queue.get(), WAIT_S) == "a"


async def test_add_after_is_superseded_by_an_add_now_and_dropped_on_close() -> None:
    queue = NodeQueue()
    queue.add_after("a", LATER_S)
    queue.add_after("a", 0.01)  # the sooner one wins
    assert await asyncio.wait_for(queue.get(), WAIT_S) == "a"
    queue.done("a")
    queue.add_after("b", LATER_S)
    queue.add("b")  # an event: now, not in an hour
    assert await asyncio.wait_for(queue.get(), WAIT_S) == "b"
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


async def _embedded(
    config: Path, until: Callable[[Reconciler], bool], then: Any = None, ready: Callable[[str], None] | None = None
) -> Reconciler:
    """run_daemon in this loop until ``until(reconciler)``; ``then(reconciler)`` once it started; ``ready(url)``."""
    from orchestrator.api import SessionSettings
    from orchestrator.daemon import run_daemon

    stop = asyncio.Event()
    box: list[Reconciler] = []
    task = asyncio.ensure_future(
        run_daemon(
            SessionSettings(config=config),
            listen="127.0.0.1:0",
            ready=ready or (lambda _url: None),
            started=box.append,
            stop=stop,
        )
    )
    try:
        deadline = asyncio.get_running_loop().time() + EMBEDDED_S
        while not box or not until(box[0]):
            assert not task.done(), task.exception()
            assert asyncio.get_running_loop().time() < deadline, box[0].statistics() if box else "not started"
            if box and then is not None:
                # Bounded too: a `then` that waits for what never comes (race1: the contingency
                # power-off) fails at the deadline instead of hanging the run.
                await asyncio.wait_for(then(box[0]), max(deadline - asyncio.get_running_loop().time(), 0.1))
                then = None
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, EMBEDDED_S)
    return box[0]


def _starter(tmp_path: Path, extra: str = "") -> Path:
    from click.testing import CliRunner

    from orchestrator.cli import cli

    config = tmp_path / "o.toml"
    assert CliRunner().invoke(cli, ["init", "--sim", str(config)]).exit_code == 0
    config.write_text(config.read_text().replace("[simulation]\n", f"[simulation]\n{extra}") + DAEMON)
    return config


# No timed resync within EMBEDDED_S: a test that wants one calls reconciler.resync(); one the clock fired would
# re-queue every node and could do what a test expects an event (a gate re-check, a VM event) to do.
DAEMON = f"\n[daemon]\nresync_s = {LATER_S}\ngate_recheck_s = 0.1\n"


async def test_embedded_daemon_drives_to_the_gate_then_to_done_once_approved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approval comes from another connection (as `approve` or the API): the gate re-check sees it.

    Once approved, events naming the Management Node (the simulated inventory watch's) are swallowed, so
    that only the gate re-check can drive it on: with the re-check broken the node stays at its gate."""
    from orchestrator import api

    config = _starter(tmp_path)
    approved: list[str] = []
    swallowed: list[str] = []
    notice = Reconciler.notice

    def quiet_after_approval(self: Reconciler, name: str, why: str, *, refresh: bool = False) -> bool:
        if approved and name == "pexip-mgmt":
            swallowed.append(why)
            return True
        return notice(self, name, why, refresh=refresh)

    monkeypatch.setattr(Reconciler, "notice", quiet_after_approval)

    def state(r: Reconciler, node: str = "pexip-mgmt") -> str:
        return r.generation.engine.state_of(node)

    async def approve(r: Reconciler) -> None:
        while state(r) != "awaiting_approval":
            await asyncio.sleep(0.02)
        settings = api.SessionSettings(journal=r.session.journal_path)
        with api.open_existing_journal(settings) as journal:
            api.approve(journal, "pexip-mgmt", "security_wizard", by="test", reason="t", settings=settings)
        approved.append("pexip-mgmt")

    done = await _embedded(
        config, lambda r: set(r.generation.engine.nodes().values()) == {"ldap_authenticated"}, approve
    )
    assert isinstance(done.results["pexip-conf-01"], Done)
    settings = api.SessionSettings(journal=done.session.journal_path)
    with api.open_existing_journal(settings) as journal:
        opened = [e.payload for e in journal.events(node="pexip-mgmt", kinds="gate_opened")]
    assert [p.get("gate") for p in opened if p].count("security_wizard") == 1, opened


async def test_a_failed_node_is_retried_at_once_when_its_vm_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backed off after a failure, the node's VM imported behind the daemon's back: the watch's event retries it."""
    from adapters.sim.vsphere import SimVSphere
    from orchestrator.daemon import _reconciler

    # The backoff made longer than the whole wait (min(backoff, resync_s) > EMBEDDED_S), so that a retry can only
    # be the VM event's doing, however loaded the machine: a bound on the time from the import to the retry (2 s
    # against a 5 s backoff) is one a busy machine could break.
    monkeypatch.setattr(_reconciler, "BACKOFF_S", LATER_S)
    config = _starter(tmp_path, 'faults = "permanent=deploy_ova@pexip-mgmt"\n')
    seen: set[str] = set()

    async def import_vm(r: Reconciler) -> None:
        while r.generation.engine.state_of("pexip-mgmt") != "failed":
            await asyncio.sleep(0.02)
        d, node = r.deployment, r.deployment.management
        assert r.session.world is not None
        assert r.journal.last_event("pexip-mgmt", kind="retried") is None
        seen.add("imported")
        await SimVSphere(r.session.world, d).import_ova(node, f"{d.name}/{node.name}", d.ova.management)

    def retried(r: Reconciler) -> bool:
        return "imported" in seen and r.journal.last_event("pexip-mgmt", kind="retried") is not None

    await _embedded(config, retried, import_vm)
