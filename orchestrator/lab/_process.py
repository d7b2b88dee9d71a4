"""The lab's detached processes (vcsim, slapd, the network simulators): is a pid still ours, and stop it.

A pid is "ours" only while it is alive (not a zombie) and its command line is the program we
started, so that a recycled pid of something else is never signalled.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["is_our_process", "reap", "stop_process"]


def is_our_process(pid: int | None, *, program: str | None = None, module: str | None = None) -> bool:
    """``pid`` is alive and runs ``program`` (its executable's name) or ``python -m module``."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if ") Z" in stat or not cmdline:
        return False
    if program is not None and Path(cmdline[0].decode(errors="replace")).name == program:
        return True
    return module is not None and module.encode() in cmdline


def stop_process(pid: int, is_ours: Callable[[int], bool], timeout: float) -> None:
    """SIGTERM ``pid`` when it is ours, SIGKILL after ``timeout``; its exit status collected when it is our child."""
    if not is_ours(pid):
        reap(pid)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_ours(pid) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.02)
    if is_ours(pid):
        os.kill(pid, signal.SIGKILL)
    reap(pid)


def reap(pid: int) -> None:
    """Collect the exit status when ``pid`` is a child of this process (a lab started here)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
