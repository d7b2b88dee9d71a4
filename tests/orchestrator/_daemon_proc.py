"""A daemon as a process over a simulated starter deployment (`init --sim`), for the daemon's tests and bench."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from orchestrator import api
from orchestrator.cli import cli

ROOT = Path(__file__).resolve().parents[2]

# The bound on a wait for something the daemon does (ready, a state, a log line, its exit): far above what a
# loaded machine takes (an in-process daemon test took 16 s beside 8 jobs); it only ends a test that would hang.
WAIT_S = 180.0

NEW_ENTRY = """
[[conferencing]]
name = "{name}"
hostname = "{hostname}"
domain = "lab.example.com"
address = "{address}"
netmask = "255.255.255.0"
gateway = "10.99.0.1"
host = "DC0_H0"
portgroup = "Pexip-VLAN100"
vlan = {vlan}
cpus = 4
memory_mb = 4096
disk_iops_limit = 100
location = "Lab"
sip_tls_fqdn = "{hostname}.lab.example.com"
"""


def starter(directory: Path, *, latency: float = 0.0) -> Path:
    """An `init --sim` deployment in ``directory`` that the daemon re-checks quickly."""
    config = directory / "orchestrator.toml"
    result = CliRunner().invoke(cli, ["init", "--sim", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # No timed resync within WAIT_S: one would re-queue every node and could do what a test expects of an event.
    text = config.read_text() + "\n[daemon]\nresync_s = 3600\ngate_recheck_s = 0.3\n"
    if latency:
        text = text.replace("[simulation]\n", f"[simulation]\nlatency = {latency}\n")
    config.write_text(text)
    return config


def new_entry(number: int, vlan: int = 100) -> str:
    return NEW_ENTRY.format(
        name=f"pexip-conf-{number:02d}", hostname=f"conf{number:02d}", address=f"10.99.0.{20 + number}", vlan=vlan
    )


class Daemon:
    """``orchestrator -c CONFIG daemon`` as a child process; its stderr (the logs) kept in ``log``."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None) -> None:
        full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        full.pop("ORCHESTRATOR_JOURNAL", None)
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "-c", str(config), "daemon", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full,
        )
        self.log: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        self._readers = [
            threading.Thread(target=self._read_err, daemon=True),
            threading.Thread(target=self._read_out, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("daemon ready; serving "):
                self.url = line.split()[-1]
                self._ready.set()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_ready(self, timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"daemon not ready (exit {self.proc.poll()}):\n{''.join(self.log)}")
        assert self.url is not None
        return self.url

    def logged(self, text: str) -> bool:
        return any(text in line for line in list(self.log))

    def wait(self, timeout: float = WAIT_S) -> int:
        """The exit code, once the process ended and its pipes are read and closed."""
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for reader in self._readers:
                reader.join(5)
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()

    def stop(self, timeout: float = WAIT_S) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)


def settings(config: Path) -> api.SessionSettings:
    # The journal by its path (init --sim puts it beside the file): the file may hold a bad edit.
    return api.SessionSettings(journal=config.parent / "journal.sqlite", allow_version_change=True)


def states(config: Path) -> dict[str, str]:
    with api.open_existing_journal(settings(config), readonly=True) as journal:
        return {r.name: r.state for r in journal.nodes()}


def events(config: Path) -> list[Any]:
    with api.open_existing_journal(settings(config), readonly=True) as journal:
        return list(journal.events())


def approve(config: Path, node: str = "pexip-mgmt", gate: str = "security_wizard") -> None:
    with api.open_existing_journal(settings(config)) as journal:
        api.approve(journal, node, gate, by="test", reason="daemon test", settings=settings(config))


def wait_for(check: Callable[[], bool], timeout: float = WAIT_S, what: str = "", daemon: Daemon | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            log = "".join(daemon.log) if daemon else ""
            raise AssertionError(f"timed out waiting for {what}\n{log}")
        time.sleep(0.1)


def all_done(config: Path, count: int) -> Callable[[], bool]:
    def check() -> bool:
        found = states(config)
        return len(found) == count and set(found.values()) == {"ldap_authenticated"}

    return check
