"""`orchestrator daemon` as a process over a simulated deployment: driven to done, new entries, bad edits,
SIGTERM and restart, one daemon per journal (slow: each test starts processes)."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from _daemon_proc import Daemon, all_done, approve, events, new_entry, starter, states, wait_for

from journal import kinds

pytestmark = pytest.mark.slow


def test_drives_to_done_picks_up_a_new_entry_and_refuses_a_bad_edit(tmp_path: Path) -> None:
    config = starter(tmp_path)
    daemon = Daemon(config)
    try:
        url = daemon.wait_ready()
        wait_for(lambda: states(config).get("pexip-mgmt") == "awaiting_approval", what="the gate", daemon=daemon)
        approve(config)  # as `orchestrator approve` does, from another connection: the daemon sees it
        wait_for(all_done(config, 3), what="3 nodes done", daemon=daemon)

        config.write_text(config.read_text() + new_entry(3))
        wait_for(all_done(config, 4), what="the new node done", daemon=daemon)
        assert daemon.logged("configuration reloaded")

        good = config.read_text()
        config.write_text(good + new_entry(4, vlan=4095))  # 4095: the guide forbids it
        wait_for(lambda: daemon.logged("configuration refused"), what="the refusal", daemon=daemon)
        refusal = next(line for line in daemon.log if "configuration refused" in line)
        assert "conferencing[3].vlan" in refusal, refusal
        time.sleep(0.5)
        with urllib.request.urlopen(f"{url}/api/nodes", timeout=5) as answer:  # the API, while the edit is bad
            served = {n["node"]: n["state"] for n in json.load(answer)["nodes"]}
        assert served == states(config)
        assert set(states(config)) == {"pexip-mgmt", "pexip-conf-01", "pexip-conf-02", "pexip-conf-03"}
        assert daemon.proc.poll() is None  # still running, the same set

        config.write_text(good)
        daemon.proc.send_signal(signal.SIGHUP)  # systemctl reload: the file read again
        wait_for(lambda: daemon.logged('"why": "SIGHUP"'), what="the SIGHUP reload", daemon=daemon)
    finally:
        assert daemon.stop() == 0, "".join(daemon.log)
    assert not daemon.logged("Traceback"), "".join(daemon.log)


def test_a_second_daemon_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    config = starter(tmp_path)
    first = Daemon(config)
    try:
        first.wait_ready()
        # Its own simulated world (a world is one process's), the same journal: the leases refuse it.
        other = tmp_path / "second.toml"
        world = str(tmp_path / "world.sqlite")
        other.write_text(config.read_text().replace(world, str(tmp_path / "world-2.sqlite")))
        second = Daemon(other)
        assert second.wait() == 1, "".join(second.log)
        assert any("held by" in line or "locked" in line.lower() for line in second.log), "".join(second.log)
        assert first.proc.poll() is None
    finally:
        assert first.stop() == 0


def test_sigterm_mid_run_then_a_restart_finishes_each_step_once(tmp_path: Path) -> None:
    config = starter(tmp_path, latency=0.05)
    approve_later = True
    daemon = Daemon(config)
    try:
        daemon.wait_ready()
        wait_for(
            lambda: sum(e.kind == kinds.STEP_COMMITTED for e in events(config)) >= 3,
            what="a few steps",
            daemon=daemon,
        )
        daemon.proc.send_signal(signal.SIGTERM)
    finally:
        assert daemon.wait() == 0, "".join(daemon.log)
    stopped = states(config)
    assert "ldap_authenticated" not in stopped.values(), stopped
    restarted = Daemon(config)
    try:
        restarted.wait_ready()
        if approve_later:
            wait_for(lambda: states(config).get("pexip-mgmt") == "awaiting_approval", what="the gate")
            approve(config)
        wait_for(all_done(config, 3), what="3 nodes done", daemon=restarted)
    finally:
        assert restarted.stop() == 0
    committed = Counter((e.node, e.step) for e in events(config) if e.kind == kinds.STEP_COMMITTED)
    assert committed and max(committed.values()) == 1, [k for k, n in committed.items() if n > 1]


def test_ready_watchdog_and_stopping_reach_the_notify_socket(tmp_path: Path) -> None:
    """systemd's protocol on a test NOTIFY_SOCKET: READY=1 once serving, WATCHDOG=1 pings, STOPPING=1."""
    config = starter(tmp_path)
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(20)
        daemon = Daemon(config, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
        try:
            got = [sock.recv(4096).decode() for _ in range(3)]
            assert "READY=1" in got, got
            assert "WATCHDOG=1" in got, got
            assert daemon.url is not None or daemon.wait_ready()
        finally:
            assert daemon.stop() == 0
        rest = []
        sock.settimeout(0.2)
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert "STOPPING=1" in rest, rest
