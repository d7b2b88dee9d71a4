"""The lab's network simulators in one process: the Management API server, the Management Node's SSH
console and each Conferencing Node's provisioning interface, on 127.0.0.1, over the lab's world
(opened ``shared`` with the runs).

``lab up`` starts ``python -m orchestrator.lab._serve LAB_DIR`` in a session of its own. The
process reads ``<lab>/servers.toml`` (the lab's deployment as the simulators see it: the Manager
simulated), serves until SIGTERM, and writes ``<lab>/servers.json`` once it listens: its pid, the
API's URL and certificate, the client certificate it trusts, the SSH console's port and host key,
each node's provisioning URL and pin.
Certificates, the console's host key and the ports are made once and kept under ``<lab>``, and the
world is a file, so a restarted lab keeps its state, its pins and its addresses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.lab._process import is_our_process, stop_process

__all__ = [
    "CONSOLE_PASSWORD",
    "REBOOT_S",
    "SERVERS_CONFIG",
    "SERVERS_FILE",
    "is_our_servers",
    "start_servers",
    "stop_servers",
]

SERVERS_CONFIG = "servers.toml"
SERVERS_FILE = "servers.json"
CONSOLE_PASSWORD = "console-admin-password"  # <lab>/secrets/<this>: the console's admin password, both sides
REBOOT_S = 2.0  # how long the lab's Manager is down after each wizard (pexip-api.md 7.10)
_MODULE = "orchestrator.lab._serve"  # the process; not imported by the package (runpy would warn)


def is_our_servers(pid: int | None) -> bool:
    """``pid`` is alive and is this module's process (not a recycled pid of something else)."""
    return is_our_process(pid, module=_MODULE)


def stop_servers(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM the simulators' process (SIGKILL after ``timeout``); nothing if ``pid`` is not it."""
    stop_process(pid, is_our_servers, timeout)


def start_servers(lab_dir: Path, *, timeout: float = 30.0) -> dict[str, Any]:
    """Start the simulators' process (detached) and return what it wrote to ``servers.json``.

    Raises:
        RuntimeError: it exited or did not listen within ``timeout`` (its log is named).
    """
    lab_dir = Path(lab_dir).resolve()
    info_file, log = lab_dir / SERVERS_FILE, lab_dir / "servers.log"
    info_file.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with open(log, "ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own module, no shell
            [sys.executable, "-m", _MODULE, str(lab_dir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,  # outlives `lab up`
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if info_file.is_file():
            info: dict[str, Any] = json.loads(info_file.read_text())
            if info.get("pid") == process.pid:
                process.returncode = 0  # detached on purpose: no ResourceWarning when collected
                return info
        if process.poll() is not None:
            raise RuntimeError(f"the lab's simulators exited ({process.returncode}); see {log}")
        time.sleep(0.05)
    process.terminate()
    raise RuntimeError(f"the lab's simulators did not start within {timeout:g} s; see {log}")
