"""Remote syslog: RFC 5424 messages to the deployment's syslog servers (udp, tcp, tls).

The journal's signed checkpoints are sent here so that a copy exists outside the machine
that a local attacker cannot rewrite (issue #7). One message per server, over the server's
own transport: UDP datagrams, TCP with a line feed after each message (RFC 6587
non-transparent framing, what rsyslog's ``imtcp`` reads by default), TLS with octet
counting (RFC 5425), verified against the configured CA file (else the system's).

    async with RemoteSyslog(deployment.network.syslog_servers, ca_file=ca) as syslog:
        failures = await syslog.send("checkpoint", line)   # [(server, error)], never raises

Socket and TLS errors are mapped once (:func:`map_syslog_errors`) onto ``config.errors``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol

from config.errors import AdapterError, Rejected, Timeout, Unreachable
from config.model import SyslogServer

__all__ = ["SyslogSender", "RemoteSyslog", "format_message", "map_syslog_errors"]

SYSTEM = "syslog"
# facility local0 (16), severity notice (5): an audit record, not an error.
_PRIORITY = 16 * 8 + 5


class SyslogSender(Protocol):
    """What the orchestrator needs of remote syslog: send one message to every server."""

    async def send(self, msgid: str, text: str) -> list[tuple[str, AdapterError]]:
        """Send ``text`` to every server; returns the servers that failed, with why."""
        ...

    async def aclose(self) -> None: ...


def format_message(
    msgid: str, text: str, *, app: str = "orchestrator", hostname: str | None = None, at: datetime | None = None
) -> str:
    """One RFC 5424 message: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG`` (no line feed)."""
    stamp = (at or datetime.now(UTC)).isoformat(timespec="microseconds").replace("+00:00", "Z")
    host = (hostname or socket.gethostname() or "-").replace(" ", "_")[:255]
    return f"<{_PRIORITY}>1 {stamp} {host} {app} - {msgid} - {text}"


def _where(server: SyslogServer) -> str:
    return f"{server.transport}://{server.address}:{server.port}"


@contextmanager
def map_syslog_errors(server: SyslogServer) -> Iterator[None]:
    """Re-raise socket and TLS errors as ``config.errors`` types, ``from`` the original."""
    where = f"syslog server {_where(server)}"
    try:
        yield
    except AdapterError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise Rejected(
            f"{where}: its TLS certificate is not trusted ({exc.verify_message}); give the CA that signed it",
            system=SYSTEM,
        ) from exc
    except ssl.SSLError as exc:
        raise Unreachable(f"{where}: TLS failed ({exc})", system=SYSTEM) from exc
    except TimeoutError as exc:
        raise Timeout(f"{where}: no answer in time", system=SYSTEM) from exc
    except OSError as exc:
        raise Unreachable(f"{where}: cannot reach it ({exc.strerror or exc})", system=SYSTEM) from exc


class RemoteSyslog:
    """The real sender: a fresh connection per message (checkpoints are rare; nothing to keep open).

    Args:
        servers: the deployment's ``network.syslog_servers``.
        ca_file: the CA that signs the TLS servers' certificates (default: the system's CAs).
        timeout_s: per server, for connecting and sending.
    """

    def __init__(
        self,
        servers: Sequence[SyslogServer],
        *,
        ca_file: str | Path | None = None,
        timeout_s: float = 3.0,
        hostname: str | None = None,
    ) -> None:
        self.servers = tuple(servers)
        self._ca_file = ca_file
        self._timeout = timeout_s
        self._hostname = hostname
        self._tls: ssl.SSLContext | None = None

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)
            self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        return self._tls

    async def send(self, msgid: str, text: str) -> list[tuple[str, AdapterError]]:
        message = format_message(msgid, text, hostname=self._hostname)
        results = await asyncio.gather(*(self._send_one(s, message) for s in self.servers))
        return [(_where(s), err) for s, err in zip(self.servers, results, strict=True) if err is not None]

    async def _send_one(self, server: SyslogServer, message: str) -> AdapterError | None:
        try:
            with map_syslog_errors(server):
                await asyncio.wait_for(self._deliver(server, message.encode()), self._timeout)
        except AdapterError as exc:
            return exc
        return None

    async def _deliver(self, server: SyslogServer, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        if server.transport == "udp":
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(server.address, server.port)
            )
            try:
                transport.sendto(data)
            finally:
                transport.close()
            return
        tls = server.transport == "tls"
        reader, writer = await asyncio.open_connection(
            server.address,
            server.port,
            ssl=self._tls_context() if tls else None,
            server_hostname=server.address if tls else None,
        )
        del reader
        try:
            # RFC 5425 (TLS) frames by octet count; plain TCP by a line feed (RFC 6587 3.4.2).
            writer.write(b"%d %s" % (len(data), data) if tls else data + b"\n")
            await writer.drain()
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass  # the message was handed over; a close error loses nothing

    async def aclose(self) -> None:
        """Nothing is held open between messages."""

    async def __aenter__(self) -> RemoteSyslog:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
