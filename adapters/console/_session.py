"""One SSH session to a node's console: the host key checked first, prompts read, a masked transcript.

The host key is verified during the key exchange, before the password leaves this process: a
pinned ``SHA256:...`` fingerprint, an OpenSSH known_hosts file, or (only when configured
explicitly) trust on first use, the first key seen then pinned for the process.
asyncssh's errors are mapped at this boundary (:func:`map_asyncssh_errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from config.errors import Rejected, Unreachable

__all__ = ["HostKeyPin", "Transcript", "Session", "open_session", "map_asyncssh_errors", "Refused", "Dropped"]

_log = logging.getLogger(__name__)
_SYSTEM = "console"
MASK = "********"
PROMPT_ENDS = (": ", "$ ")


class Refused(Exception):
    """The console refused the login. ``password_tried``: False when the console offered no password
    login at all (after the security wizard: no OS login exists), True when it refused the password."""

    def __init__(self, message: str, *, password_tried: bool):
        super().__init__(message)
        self.password_tried = password_tried


class Dropped(Unreachable):
    """The session ended before the console's next prompt (connection lost)."""


@dataclass
class HostKeyPin:
    """How the console's host key is verified. Exactly one of the three is in use."""

    fingerprint: str | None = None
    known_hosts: Path | None = None
    trust_on_first_use: bool = False
    seen: str | None = None  # the fingerprint the last connection showed
    # Keys trusted on first use and not yet reported: (host:port, fingerprint), for the journal.
    accepted: list[tuple[str, str]] = field(default_factory=list)

    def options(self) -> dict[str, Any]:
        if self.known_hosts is not None:
            return {"known_hosts": str(self.known_hosts)}
        return {"known_hosts": ([], [], [])}  # nothing trusted in advance: validate_host_public_key decides

    def accepts(self, key: asyncssh.SSHKey, address: str = "") -> bool:
        seen = key.get_fingerprint("sha256")
        self.seen = seen
        if self.fingerprint is not None:
            return seen == self.fingerprint
        if self.trust_on_first_use:
            self.fingerprint = seen  # from now on pinned
            self.accepted.append((address, seen))
            _log.warning("console host key trusted on first use: %s (pin it as console.host_key_fingerprint)", seen)
            return True
        return False


@dataclass
class Transcript:
    """What the console printed and what was typed; secrets typed are masked, secrets printed too."""

    secrets: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def shown(self, text: str) -> None:
        self.lines.append(self._masked(text.replace("\r", "")))

    def typed(self, text: str, *, secret: bool = False) -> None:
        self.lines.append(f"> {MASK if secret else self._masked(text)}")

    def _masked(self, text: str) -> str:
        for s in self.secrets:
            if s:
                text = text.replace(s, MASK)
        return text

    def __str__(self) -> str:
        return "\n".join(self.lines[-40:])


@contextlib.contextmanager
def map_asyncssh_errors(
    where: str, transcript: Transcript | None = None, tried: list[bool] | None = None
) -> Iterator[None]:
    """asyncssh's and the socket's errors as ours; ``where`` names the console."""
    tail = f"\ntranscript:\n{transcript}" if transcript is not None and transcript.lines else ""
    try:
        yield
    except asyncssh.HostKeyNotVerifiable as exc:
        raise Rejected(f"{where}: host key not verified: {exc.reason}; nothing was sent", system=_SYSTEM) from exc
    except asyncssh.PermissionDenied as exc:
        raise Refused(f"{where}: login refused", password_tried=bool(tried)) from exc
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncio.IncompleteReadError, BrokenPipeError) as exc:
        raise Dropped(f"{where}: the session was dropped{tail}", system=_SYSTEM) from exc
    except (TimeoutError, OSError) as exc:
        raise Unreachable(f"{where}: cannot connect: {exc}", system=_SYSTEM) from exc


class Session:
    """An interactive process on the console: read up to a prompt, type an answer."""

    def __init__(self, process: asyncssh.SSHClientProcess[str], transcript: Transcript, where: str, timeout_s: float):
        self._process = process
        self.transcript = transcript
        self._where = where
        self._timeout_s = timeout_s
        self.farewell: str | None = None

    async def prompt(self) -> tuple[str, str]:
        """The output up to the next prompt, split as (text before it, the prompt line).

        Raises:
            Rejected: the console ended the session instead (it said why: in the transcript).
        """
        got = await self.prompt_or_end()
        if got is None:
            raise Rejected(
                f"{self._where}: the console closed the session. Transcript (secrets masked):\n{self.transcript}",
                system=_SYSTEM,
            )
        return got

    async def prompt_or_end(self) -> tuple[str, str] | None:
        """As :meth:`prompt`, or None when the console ended the session (its last words in ``farewell``)."""
        with map_asyncssh_errors(self._where, self.transcript):
            try:
                data = await asyncio.wait_for(self._process.stdout.readuntil(PROMPT_ENDS), self._timeout_s)
            except TimeoutError as exc:
                raise Unreachable(
                    f"{self._where}: no prompt within {self._timeout_s:g} s. Transcript (secrets masked):\n"
                    f"{self.transcript}",
                    system=_SYSTEM,
                ) from exc
            except asyncio.IncompleteReadError as exc:
                partial = str(exc.partial or "")
                if partial:
                    self.transcript.shown(partial)
                if self._process.exit_status is None:
                    raise  # the connection went away: dropped
                self.farewell = partial  # the console ended the session
                return None
        self.transcript.shown(data)
        before, _, line = data.replace("\r", "").rpartition("\n")
        return before, line

    async def answer(self, text: str, *, secret: bool = False) -> None:
        self.transcript.typed(text, secret=secret)
        with map_asyncssh_errors(self._where, self.transcript):
            self._process.stdin.write(text + "\n")
            await self._process.stdin.drain()

    async def rest(self) -> str:
        """Everything until the console closes the session (a reboot's last words)."""
        if self.farewell is not None:
            return self.farewell
        with map_asyncssh_errors(self._where, self.transcript):
            with contextlib.suppress(asyncssh.Error, OSError, asyncio.IncompleteReadError):
                data = await asyncio.wait_for(self._process.stdout.read(), self._timeout_s)
                self.transcript.shown(data)
                return data
        return ""


@contextlib.asynccontextmanager
async def open_session(
    host: str,
    port: int,
    password: str,
    pin: HostKeyPin,
    transcript: Transcript,
    *,
    timeout_s: float,
    connect_timeout_s: float = 10.0,
) -> AsyncIterator[Session]:
    """Log in as ``admin`` and start an interactive process (no PTY: no echo of what is typed).

    Raises:
        Rejected: the host key is not the pinned one (before the password is sent).
        Refused: the login was refused (``password_tried`` says whether a password was asked).
        Unreachable: no connection (a reboot, a wrong address).
    """
    where = f"console {host}:{port}"

    class _Client(asyncssh.SSHClient):
        def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
            return pin.accepts(key, f"{host}:{port}")

    tried: list[bool] = []

    def give_password() -> str:
        tried.append(True)  # the console offered a password login (none is offered once secured)
        return password

    with map_asyncssh_errors(where, transcript, tried):
        conn, _ = await asyncio.wait_for(
            asyncssh.create_connection(
                _Client,
                host,
                port,
                username="admin",
                password=give_password,
                client_keys=None,
                agent_path=None,
                preferred_auth=["password"],
                **pin.options(),
            ),
            connect_timeout_s,
        )
    try:
        with map_asyncssh_errors(where, transcript):
            process = await conn.create_process(term_type=None, encoding="utf-8")
        yield Session(process, transcript, where, timeout_s)
    finally:
        conn.abort()
        with contextlib.suppress(Exception):
            await conn.wait_closed()
