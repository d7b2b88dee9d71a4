"""systemd's notification protocol (``sd_notify``) over a plain datagram socket: no dependency needed.

``READY=1`` once the daemon serves, ``STOPPING=1`` on shutdown, ``WATCHDOG=1`` every half of
``$WATCHDOG_USEC`` (systemd restarts a daemon whose loop stops answering). Without
``$NOTIFY_SOCKET`` (not run by systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import os
import socket

import structlog

__all__ = ["notify", "watchdog_period", "watchdog"]

log = structlog.get_logger("orchestrator.daemon")


def notify(message: str) -> bool:
    """Send ``message`` (``"READY=1"``...) to ``$NOTIFY_SOCKET``; False when there is none (or it failed)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket (Linux): a leading NUL byte
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify failed", message=message, error=str(exc))
        return False
    return True


def watchdog_period() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (systemd's advice), when the watchdog is on for this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def watchdog(period: float) -> None:
    """``WATCHDOG=1`` every ``period`` seconds, from the event loop: a blocked loop stops the pings."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(period)
