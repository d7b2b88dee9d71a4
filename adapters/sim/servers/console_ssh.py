"""The Management Node's SSH console as a real asyncssh server on 127.0.0.1, over the in-process twin.

The wizards' outcomes are the twin's (:class:`~adapters.sim.console.SimConsole` over the same
:class:`~adapters.sim.world.SimWorld`), so the server and the twin cannot drift. What it adds is
the wire, as the guide tells it ("Management Node deployment and bootstrap configuration"):

- user ``admin`` with the console password (the one an operator set at the first console login);
- before the installation wizard, a login starts it: the admin password again, then the
  wizard's prompts with their defaults in brackets; on completion the system reboots;
- afterwards a login gives a shell where ``securitywizard`` asks the admin password and then every
  prompt of the guide's table, each with its default in parentheses; the system reboots;
- a reboot refuses connections for ``reboot_s``; after the security wizard no OS login exists
  (authentication is refused, whatever the password).

Every answer is read up to the end of its line; nothing is applied until the last answer, so a
session dropped mid-wizard leaves the node where it was. ``drop_at_prompt = N`` aborts the TCP
connection instead of sending the N-th prompt counted since the server started (once);
``extra_prompt = (key, text)`` asks one more prompt before the answer ``key``, and
``reverse_prompts`` asks both wizards' prompts in reverse order (another version).

Example::

    async with ConsoleServer(world, deployment, "console-Passw0rd-1", key_file=lab / "console_host_key") as server:
        port, fingerprint = server.port, server.fingerprint   # "SHA256:..." as ssh-keygen -lf prints
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from adapters.sim.console import SimConsole
from adapters.sim.world import CONSOLE, SimWorld, digest
from config.errors import Rejected
from config.model import Deployment

__all__ = ["HOST", "INSTALLATION_PROMPTS", "SECURITY_PROMPTS", "ConsoleServer"]

HOST = "127.0.0.1"
_T = TypeVar("_T")

# (prompt as the console prints it, the answer's key, kind). Kinds: text, list, yesno, secret.
INSTALLATION_PROMPTS: tuple[tuple[str, str, str], ...] = (
    ("IP address [{address}]: ", "address", "text"),
    ("Network mask [{netmask}]: ", "netmask", "text"),
    ("Gateway [{gateway}]: ", "gateway", "text"),
    ("Hostname [{hostname}]: ", "hostname", "text"),
    ("Domain suffix [{domain}]: ", "domain", "text"),
    ("DNS servers [{dns}]: ", "dns_servers", "list"),
    ("NTP servers [{ntp}]: ", "ntp_servers", "list"),
    ("Web administration username [admin]: ", "admin_user", "text"),
    ("Web administration password: ", "web_admin_password", "secret"),
    ("Enable incident reporting (yes/no): ", "enable_incident_reporting", "yesno"),
    ("Contact email address: ", "contact_email_address", "text"),  # only when incident reporting is yes
    ("Send deployment and usage statistics to Pexip (yes/no): ", "send_deployment_and_usage_statistics", "yesno"),
)

# The guide's table, each setting with its default, in the guide's words and order.
SECURITY_PROMPTS: tuple[tuple[str, str, str], ...] = (
    ("Enable FIPS 140-2 compliance mode (default = NO): ", "enable_fips_140_2_compliance_mode", "yesno"),
    (
        "Disable system administrator account (NO) (this applies to SSH and console access): ",
        "disable_system_administrator_account",
        "yesno",
    ),
    ("Accept ICMPv6 redirects (NO): ", "accept_icmpv6_redirects", "yesno"),
    (
        "Drop incoming packets to closed ports rather than reject (YES): ",
        "drop_incoming_packets_to_closed_ports",
        "yesno",
    ),
    ("Accept multicast ICMPv6 echo requests (YES): ", "accept_multicast_icmpv6_echo_requests", "yesno"),
    ("Enable IPv6 Duplicate Address Detection (YES): ", "enable_ipv6_duplicate_address_detection", "yesno"),
    ("SIP UDP listen port (5060): ", "sip_udp_listen_port", "int"),
    ("SIP TCP listen port (5060): ", "sip_tcp_listen_port", "int"),
    ("SIP TLS listen port (5061): ", "sip_tls_listen_port", "int"),
    ("Active management web sessions (0): ", "active_management_web_sessions", "int"),
    ("Active per-user management web sessions (0): ", "active_per_user_management_web_sessions", "int"),
    (
        "Enable management web validation of host headers (NO): ",
        "enable_management_web_validation_of_host_headers",
        "yesno",
    ),
    ("Enable TLS 1.0 (YES): ", "enable_tls_1_0", "yesno"),
    ("Enable Anonymous DH for outbound SIP/TLS (YES): ", "enable_anonymous_dh_for_outbound_sip_tls", "yesno"),
)
_SECURITY_DEFAULTS = (False, False, False, True, True, True, 5060, 5060, 5061, 0, 0, False, True, True)

_START_INSTALL = "Enter the admin user password to permit the installation wizard to start: "
_START_SECURITY = "Enter the admin user password to permit the security wizard to start: "
_REBOOT = "The system will now reboot.\r\n"


class _Dropped(Exception):
    """The session is cut (the fault hook fired, or the client went away)."""


class ConsoleServer:
    """The console of ``deployment.management`` served over SSH, host key generated per server."""

    def __init__(
        self,
        world: SimWorld,
        deployment: Deployment,
        console_password: str,
        *,
        reboot_s: float = 0.3,
        drop_at_prompt: int | None = None,
        extra_prompt: tuple[str, str] | None = None,
        reverse_prompts: bool = False,
        static_host: str | None = None,
        key_file: Path | None = None,
        port: int = 0,
    ):
        self._world = world
        self._deployment = deployment
        self._node = deployment.management
        self._console = SimConsole(world, deployment)
        self._password = console_password
        self._key = _host_key(key_file)
        self.fingerprint: str = self._key.get_fingerprint("sha256")
        self.reboot_s = reboot_s
        self.drop_at_prompt = drop_at_prompt
        self.extra_prompt = extra_prompt  # (before which answer, prompt): another version's wizard
        self.reverse_prompts = reverse_prompts  # both wizards ask in reverse order: another version's
        self.port = port  # 0: any free one, kept across reboots (the lab keeps it across restarts too)
        # Where it listens: HOST, and after the installation wizard ``static_host`` when given (the
        # wizard sets the node's static address; before it the node answered at another one).
        self._static_host = static_host
        self.prompts_sent = 0
        self.wizards: Counter[str] = Counter()  # completed wizards: "installation", "security"
        self.logins: Counter[str] = Counter()  # "accepted", "refused"
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._reboot: asyncio.Task[None] | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()

    @property
    def public_key(self) -> str:
        """The host key as a known_hosts line's key part ("ssh-ed25519 AAAA...")."""
        return self._key.export_public_key("openssh").decode().strip()

    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.public_key}\n"

    @property
    def host(self) -> str:
        return self._static_host if self._static_host and self.state() != "unconfigured" else HOST

    def state(self) -> str:
        record = self._world.get(CONSOLE, self._node.name) or {}
        return str(record.get("wizard_state", "unconfigured"))

    async def start(self) -> None:
        server = self

        class _Auth(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                server._connections.add(conn)

            def connection_lost(self, exc: Exception | None) -> None:
                server._connections = {c for c in server._connections if not c.is_closed()}

            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return server.state() != "secured"  # the security wizard removed OS login for good

            def validate_password(self, username: str, password: str) -> bool:
                ok = username == "admin" and server._password_ok(password)
                server.logins["accepted" if ok else "refused"] += 1
                return ok

        self._acceptor = await asyncssh.create_server(
            _Auth,
            self.host,
            self.port,
            server_host_keys=[self._key],
            process_factory=self._session,
            reuse_address=True,
            keepalive_interval=0,
        )
        self.port = self._acceptor.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._reboot is not None:
            self._reboot.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reboot
            self._reboot = None
        await self._stop_listening()

    async def __aenter__(self) -> ConsoleServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- the sessions ---------------------------------------------------------------------

    def _ordered(self, prompts: tuple[_T, ...]) -> tuple[_T, ...]:
        return prompts[::-1] if self.reverse_prompts else prompts

    def _password_ok(self, password: str) -> bool:
        return digest(password) == digest(self._password)  # set at the first console login

    async def _session(self, process: asyncssh.SSHServerProcess[str]) -> None:
        try:
            if self.state() == "unconfigured":
                await self._installation(process)
            else:
                await self._shell(process)
        except _Dropped:
            process.get_extra_info("connection").abort()
            return
        except (asyncssh.Error, OSError, asyncio.IncompleteReadError):
            return  # the client went away
        with contextlib.suppress(OSError, asyncssh.Error):
            process.exit(0)

    async def _ask(self, process: asyncssh.SSHServerProcess[str], prompt: str) -> str:
        self.prompts_sent += 1
        if self.drop_at_prompt is not None and self.prompts_sent == self.drop_at_prompt:
            self.drop_at_prompt = None  # once
            raise _Dropped
        process.stdout.write(prompt)
        line = await process.stdin.readline()
        if not line.endswith("\n"):
            raise _Dropped  # EOF before the answer's end: nothing is taken
        return line.strip()

    async def _installation(self, process: asyncssh.SSHServerProcess[str]) -> None:
        node, net = self._node, self._deployment.network
        process.stdout.write("Pexip Infinity installation wizard\r\n")
        if not self._password_ok(await self._ask(process, _START_INSTALL)):
            process.stdout.write("Incorrect password.\r\n")
            return
        defaults = {
            "address": node.address,
            "netmask": node.netmask,
            "gateway": node.gateway,
            "hostname": node.hostname,
            "domain": node.domain,
            "dns": " ".join(net.dns_servers),
            "ntp": " ".join(s.address for s in net.ntp_servers),
        }
        answers: dict[str, Any] = {}
        web_password = ""
        for prompt, key, kind in self._ordered(INSTALLATION_PROMPTS):
            if key == "contact_email_address" and not answers.get("enable_incident_reporting"):
                continue  # asked only when incident reporting is on
            if self.extra_prompt is not None and key == self.extra_prompt[0]:
                await self._ask(process, self.extra_prompt[1])
            text = prompt.format(**defaults)
            raw = await self._ask(process, text)
            if kind == "secret":
                web_password = raw
                continue
            if not raw and "[" in text:
                raw = text[text.index("[") + 1 : text.index("]")]
            value = _parse(raw, kind)
            if value is None:
                process.stdout.write(f"Invalid answer {raw!r}: expected {kind}.\r\n")
                return
            answers[key] = value
        try:
            # The twin keeps the web administrator's password (the API's local login checks it).
            await self._console.installation_wizard(node, web_password, answers)
        except Rejected as exc:
            process.stdout.write(f"Installation failed: {exc}\r\n")
            return
        self.wizards["installation"] += 1
        await self._reboot_after(process)

    async def _shell(self, process: asyncssh.SSHServerProcess[str]) -> None:
        prompt = f"admin@{self._node.hostname}:~$ "
        while True:
            command = await self._ask(process, prompt)
            if command in ("exit", "logout"):
                return
            if command == "securitywizard":
                await self._security(process)
                return
            if command:
                process.stdout.write(f"{command.split()[0]}: command not found\r\n")

    async def _security(self, process: asyncssh.SSHServerProcess[str]) -> None:
        password = await self._ask(process, _START_SECURITY)
        if not self._password_ok(password):
            process.stdout.write("Incorrect password.\r\n")
            return
        answers: dict[str, Any] = {}
        for (prompt, key, kind), default in self._ordered(
            tuple(zip(SECURITY_PROMPTS, _SECURITY_DEFAULTS, strict=True))
        ):
            raw = await self._ask(process, prompt)
            value = default if not raw else _parse(raw, kind)
            if value is None:
                process.stdout.write(f"Invalid answer {raw!r}: expected {kind}.\r\n")
                return
            answers[key] = value
        try:
            await self._console.security_wizard(self._node, password, answers, console_login=True)
        except Rejected as exc:
            process.stdout.write(f"Security wizard failed: {exc}\r\n")
            return
        self.wizards["security"] += 1
        await self._reboot_after(process)

    # --- reboots --------------------------------------------------------------------------

    async def _reboot_after(self, process: asyncssh.SSHServerProcess[str]) -> None:
        process.stdout.write(_REBOOT)
        with contextlib.suppress(OSError, asyncssh.Error):
            process.exit(0)
        self._reboot = asyncio.get_running_loop().create_task(self._rebooting())

    async def _rebooting(self) -> None:
        await asyncio.sleep(0)  # let the session's last words leave
        await self._stop_listening()
        await asyncio.sleep(self.reboot_s)
        await self.start()

    async def _stop_listening(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()


def _host_key(key_file: Path | None) -> asyncssh.SSHKey:
    """A new ed25519 host key, or the one kept in ``key_file`` (a lab that restarts keeps its fingerprint)."""
    if key_file is not None and key_file.exists():
        return asyncssh.read_private_key(key_file)
    key = asyncssh.generate_private_key("ssh-ed25519")
    if key_file is not None:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_bytes(key.export_private_key())
        key_file.chmod(0o600)
    return key


def _parse(raw: str, kind: str) -> Any:
    if kind == "yesno":
        return {"yes": True, "y": True, "no": False, "n": False}.get(raw.lower())
    if kind == "int":
        return int(raw) if raw.isdigit() else None
    if kind == "list":
        return [part for part in raw.replace(",", " ").split() if part]
    return raw
