"""The Management Node's console over SSH: the installation wizard and ``securitywizard``.

Where: the Management Node's ``address`` (the static one the installation wizard sets), and
before the wizard ``[console] address`` when given (the address the node got first, e.g. the
DHCP one VMware Tools reports), on ``[console] port``; the first that answers is used. Who: user ``admin`` with
``[console] admin_password``. The protocol's ``admin_password`` argument is the web
administrator's password (``pexip_api.admin_password``), which the installation wizard asks for.

Prompts are answered by their text (:mod:`adapters.console._prompts`), never by their order; a
prompt the client does not know stops the step (:class:`Rejected`) with the transcript, every
secret masked. The node stands where the console says: a login that starts the installation
wizard is ``unconfigured``, one that gives a shell is ``installed``, a console that offers no
password login at all is ``secured`` (the security wizard removes OS login); a refused password
is a wrong ``console.admin_password`` (Rejected), so that a typo never reads as "secured".
Nothing is applied by the node before the wizard's last answer, so a session dropped mid-wizard
is re-read after the reboot window: the wizard is reported done only when the node moved on, and
answered again only when it did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from adapters.base import FirstUseTrust, WizardState
from adapters.console._prompts import START_PASSWORD, WEB_PASSWORD, installation_key, security_key
from adapters.console._session import Dropped, HostKeyPin, Refused, Session, Transcript, open_session
from config.errors import NotYet, Rejected, Unreachable
from config.model import CONFERENCING, Deployment, NodeSpec

__all__ = ["SshConsole"]

_log = logging.getLogger(__name__)
_SYSTEM = "console"


class SshConsole:
    """:class:`adapters.base.Console` over SSH (asyncssh).

    Args:
        deployment: its ``console`` section says where and how; ``policy.retry.wait_timeout_s``
            bounds the wait for a node that reboots.
        poll_s: how often a rebooting console is tried again.

    Example::

        async with SshConsole(deployment) as console:
            state = await console.wizard_state(deployment.management)
    """

    def __init__(self, deployment: Deployment, *, poll_s: float = 1.0, timeout_s: float = 30.0):
        spec = deployment.console
        if spec.admin_password is None:
            raise Rejected("console.admin_password is not set; set it to env:NAME or file:PATH", system=_SYSTEM)
        self._deployment = deployment
        # After the installation wizard the node answers at its static address; before it, at the
        # address it got first (DHCP, as VMware Tools reports it), given as console.address.
        self._hosts = [deployment.management.address]
        if spec.address and spec.address != deployment.management.address:
            self._hosts.append(spec.address)
        self._port = spec.port
        self._password = spec.admin_password
        known = None
        if spec.known_hosts:
            base = Path(deployment.source).parent if deployment.source else Path.cwd()
            known = base / spec.known_hosts
        self.pin = HostKeyPin(spec.host_key_fingerprint, known, spec.trust_on_first_use)
        self._ready_s = deployment.policy.retry.wait_timeout_s
        self._poll_s = poll_s
        self._timeout_s = timeout_s

    # --- the protocol -----------------------------------------------------------------------

    async def wizard_state(self, node: NodeSpec) -> WizardState:
        self._management(node)
        return await self._wait_state(Transcript(self._secrets()), wait=False)

    async def installation_wizard(self, node: NodeSpec, admin_password: str, answers: dict[str, Any]) -> None:
        """Answer the installation wizard, then wait until the node is back from its reboot.

        Raises:
            Rejected: a Conferencing Node, a wizard already done, an unexpected prompt, answers refused.
            Unreachable: the session dropped and the node did not take the wizard (retry answers again).
        """
        self._management(node)
        values = {**self._network_answers(node), **answers, WEB_PASSWORD: admin_password}
        transcript = Transcript(self._secrets(admin_password))
        await self._run("installation", "unconfigured", "installed", transcript, self._install, values)

    async def security_wizard(self, node: NodeSpec, admin_password: str, answers: dict[str, Any]) -> None:
        """Type ``securitywizard`` at the shell and answer every prompt from ``answers`` (the policy).

        Raises:
            Rejected: a Conferencing Node, no installation yet, OS login gone, an unexpected prompt.
            Unreachable: the session dropped and the node did not take the wizard.
        """
        self._management(node)
        transcript = Transcript(self._secrets(admin_password))
        await self._run("security", "installed", "secured", transcript, self._secure, dict(answers))

    def first_use_trusts(self) -> list[FirstUseTrust]:
        """The host key trusted on first use since the last call (``console.trust_on_first_use``)."""
        accepted, self.pin.accepted = self.pin.accepted, []
        return [FirstUseTrust(_SYSTEM, address, fingerprint) for address, fingerprint in accepted]

    def pin_first_use(self, trusts: list[FirstUseTrust]) -> None:
        """The host key an earlier run trusted on first use is pinned: another key is refused from now on."""
        if not self.pin.trust_on_first_use or self.pin.known_hosts is not None:
            return  # pinned by the configuration: the journal changes nothing
        for trust in trusts:
            if trust.system == _SYSTEM:
                self.pin.fingerprint = trust.fingerprint  # the latest journaled one wins

    async def aclose(self) -> None:
        """Nothing is held between calls: every call opens and closes its own session."""

    async def __aenter__(self) -> SshConsole:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- the wizards ------------------------------------------------------------------------

    async def _run(
        self, wizard: str, before: str, after: str, transcript: Transcript, answer: Any, values: Any
    ) -> None:
        where = f"{self._deployment.management.name}: {wizard} wizard"
        try:
            async with self._session(transcript) as session:
                _, line = await session.prompt()
                state = self._state_of(line, transcript)
                if state != before:
                    raise Rejected(
                        f"{where} is not offered: the console reads {state} (it needs {before})", system=_SYSTEM
                    )
                await answer(session, line, values, where)
                farewell = await session.rest()
        except Refused as exc:
            self._refused(exc)
            raise Rejected(f"{where}: console login refused: no OS login (secured)", system=_SYSTEM) from exc
        except Dropped as exc:
            # The node applies a wizard only after its last answer: where does it stand now?
            now = await self._wait_state(Transcript(self._secrets()), after_reboot=True)
            if now == after:
                _log.info("%s: the session dropped after the last answer; the node took it (%s)", where, now)
                return
            raise Unreachable(f"{exc} (the node still reads {now}: the wizard will be answered again)") from exc
        if "reboot" not in farewell.lower():
            raise Rejected(f"{where}: the console did not take the answers:\n{transcript}", system=_SYSTEM)
        now = await self._wait_state(Transcript(self._secrets()), after_reboot=True)
        if now != after:
            raise Rejected(f"{where}: after the reboot the console reads {now}, not {after}", system=_SYSTEM)

    async def _install(self, session: Session, line: str, values: dict[str, Any], where: str) -> None:
        while True:
            key = installation_key(line)
            if key is None:
                return self._unexpected(where, line, session)
            if key == START_PASSWORD:
                await session.answer(self._password.reveal(), secret=True)
            elif key == WEB_PASSWORD:
                await session.answer(values[WEB_PASSWORD], secret=True)
            elif key not in values:
                return self._unexpected(where, line, session, f"no answer for {key!r}")
            else:
                await session.answer(_typed(values[key]))
            got = await session.prompt_or_end()
            if got is None:
                return  # the console ended the session after the last answer: its words say how
            _, line = got

    async def _secure(self, session: Session, shell: str, answers: dict[str, Any], where: str) -> None:
        await session.answer("securitywizard")
        pending = set(answers)
        while pending:
            got = await session.prompt_or_end()
            if got is None:  # the console finished without asking some of the policy's settings
                _log.warning("%s: the console never asked for %s", where, ", ".join(sorted(pending)))
                return
            _, line = got
            key = security_key(line, list(answers))
            if key == START_PASSWORD:
                await session.answer(self._password.reveal(), secret=True)
                continue
            if key is None or key not in pending:
                return self._unexpected(where, line, session, "asked twice" if key else "")
            pending.discard(key)
            await session.answer(
                _typed(answers[key]).upper() if isinstance(answers[key], bool) else _typed(answers[key])
            )

    @staticmethod
    def _unexpected(where: str, line: str, session: Session, why: str = "") -> None:
        reason = f" ({why})" if why else ""
        raise Rejected(
            f"{where}: unexpected prompt {line.strip()!r}{reason}; nothing more was answered, the node applies "
            f"nothing before the last answer. Transcript (secrets masked):\n{session.transcript}",
            system=_SYSTEM,
        )

    # --- where the node stands ----------------------------------------------------------------

    async def _wait_state(
        self, transcript: Transcript, *, after_reboot: bool = False, wait: bool = True
    ) -> WizardState:
        """Log in and read the first prompt; a console that does not answer is waited for (reboots).

        ``wait=False`` (an observation): a console that does not answer is NotYet at once, so the
        engine waits for it (bounded by retry.wait_timeout_s) without holding a slot.
        """
        deadline = time.monotonic() + (self._ready_s if wait else 0.0)
        if after_reboot:
            await asyncio.sleep(self._poll_s)
        while True:
            try:
                async with self._session(transcript) as session:
                    _, line = await session.prompt()
                    return self._state_of(line, transcript)
            except Refused as exc:
                self._refused(exc)
                return "secured"  # the security wizard removed OS login: the refusal is the answer
            except Unreachable as exc:
                if not wait:
                    raise NotYet(f"{exc}: the console does not answer yet (rebooting?)", system=_SYSTEM) from exc
                if time.monotonic() >= deadline:
                    raise NotYet(f"{exc} (still after {self._ready_s:g} s: policy retry.wait_timeout_s)") from exc
                await asyncio.sleep(self._poll_s)

    def _refused(self, exc: Refused) -> None:
        """A refused password is a wrong ``console.admin_password``, never "secured": a typo must not
        skip the security wizard. Only a console that offers no password login at all reads secured."""
        if exc.password_tried:
            raise Rejected(
                f"{exc}: the console refused the password of admin; check console.admin_password "
                f"({self._password.ref}): it must be the console admin password set at the first console login",
                system=_SYSTEM,
            ) from exc

    def _state_of(self, line: str, transcript: Transcript) -> WizardState:
        if line.rstrip().endswith("$"):
            return "installed"
        if installation_key(line) is not None:
            return "unconfigured"
        raise Rejected(
            f"console {'/'.join(self._hosts)}:{self._port}: the first prompt {line.strip()!r} is neither the "
            f"installation wizard nor a shell. Transcript (secrets masked):\n{transcript}",
            system=_SYSTEM,
        )

    @contextlib.asynccontextmanager
    async def _session(self, transcript: Transcript) -> AsyncIterator[Session]:
        """A session at the first address that answers: the static one, else console.address."""
        failure: Unreachable | None = None
        for host in self._hosts:
            stack = contextlib.AsyncExitStack()
            try:
                session = await stack.enter_async_context(
                    open_session(
                        host,
                        self._port,
                        self._password.reveal(),
                        self.pin,
                        transcript,
                        timeout_s=self._timeout_s,
                        connect_timeout_s=min(self._timeout_s, 10.0),
                    )
                )
            except Unreachable as exc:
                failure = exc
                continue
            async with stack:
                yield session
            return
        assert failure is not None  # self._hosts is never empty
        raise failure

    def _secrets(self, *more: str) -> list[str]:
        return [self._password.reveal(), *more]

    def _network_answers(self, node: NodeSpec) -> dict[str, Any]:
        net = self._deployment.network
        return {
            "address": node.address,
            "netmask": node.netmask,
            "gateway": node.gateway,
            "hostname": node.hostname,
            "domain": node.domain,
            "dns_servers": list(net.dns_servers),
            "ntp_servers": [s.address for s in net.ntp_servers],
            "admin_user": self._deployment.pexip_api.admin_user,
        }

    @staticmethod
    def _management(node: NodeSpec) -> None:
        if node.role == CONFERENCING:
            raise Rejected(
                f"{node.name} is a Conferencing Node: it has no console wizard; its configuration comes from "
                "the Management Node",
                system=_SYSTEM,
            )


def _typed(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)
