"""The twin of :class:`adapters.syslog.RemoteSyslog`: the simulated deployment's syslog servers.

A simulation's syslog servers are addresses of the simulated network: nothing listens
there, so the twin keeps what each server received (formatted as the real sender would)
in memory, for tests to read. ``down`` names servers that fail, as a real one that is
down would (an :class:`~config.errors.Unreachable`).
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.syslog import format_message
from config.errors import AdapterError, Unreachable
from config.model import SyslogServer

__all__ = ["SimSyslog"]


class SimSyslog:
    """Same methods and errors as ``RemoteSyslog``; messages are kept in :attr:`received`."""

    def __init__(self, servers: Sequence[SyslogServer], *, down: Sequence[str] = ()) -> None:
        self.servers = tuple(servers)
        self.down = frozenset(down)
        self.received: dict[str, list[str]] = {self._where(s): [] for s in self.servers}

    @staticmethod
    def _where(server: SyslogServer) -> str:
        return f"{server.transport}://{server.address}:{server.port}"

    async def send(self, msgid: str, text: str) -> list[tuple[str, AdapterError]]:
        failures: list[tuple[str, AdapterError]] = []
        for server in self.servers:
            where = self._where(server)
            if server.address in self.down:
                failures.append(
                    (where, Unreachable(f"syslog server {where}: cannot reach it (simulated)", system="syslog"))
                )
                continue
            self.received[where].append(format_message(msgid, text))
        return failures

    async def aclose(self) -> None:
        """Nothing to close."""
