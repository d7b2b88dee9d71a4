"""Trust on first use: the key a real client accepted is journaled, and a later run pins it (refusing another)."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest
from _sim_factory import install_manager, make_deployment, make_systems
from _ssh_console import CONSOLE_PASSWORD, real_console

from adapters.base import FirstUseTrust, Systems
from adapters.console import SshConsole
from adapters.pexip import HttpPexipApi
from adapters.pexip._tls import fingerprint_of
from adapters.sim.servers.console_ssh import ConsoleServer
from adapters.sim.servers.pexip_http import PexipServer
from adapters.sim.world import SimWorld
from config.errors import Rejected
from config.model import Deployment
from journal import Journal, kinds
from orchestrator import api
from orchestrator._first_use import journaled_trusts
from orchestrator.clock import FakeClock

CONFIG = "/api/admin/configuration/v1/"


def _systems(world: SimWorld, deployment: Deployment, server: ConsoleServer, tmp_path: Path) -> Systems:
    """The twins, but the console: the real client, no key pinned, trust_on_first_use on."""
    systems = make_systems(world, deployment)
    tofu = real_console(deployment, server, tmp_path, host_key_fingerprint=None, trust_on_first_use=True)
    systems.console = SshConsole(tofu, poll_s=0.02, timeout_s=5)
    return systems


def _trust_events(journal: Journal) -> list[dict[str, object]]:
    return [dict(e.payload) for e in journal.events(kinds=[kinds.TRUST_ON_FIRST_USE])]


async def _drive(deployment: Deployment, journal: Journal, systems: Systems, until: str) -> tuple[int, str]:
    report = await api.drive(
        deployment, journal, systems=systems, auto_approve=True, clock=FakeClock(), until=until, check_first=False
    )
    return report.exit_code, " ".join(str(a) for a in report.outcomes.values())


async def test_a_console_key_trusted_on_first_use_is_journaled_and_pinned_by_the_next_run(
    world: SimWorld, tmp_path: Path
) -> None:
    """The run that first meets the console's host key journals system, address and fingerprint once; the
    next run (another process: a new client) gets the key from the journal and refuses a console showing
    another one before the password is sent, so the security wizard is not run."""
    deployment = make_deployment(1, tmp_path)
    async with ConsoleServer(world, deployment, CONSOLE_PASSWORD, reboot_s=0.05) as server:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            real = real_console(deployment, server, tmp_path)  # the Manager answers where the server listens
            assert (await _drive(real, journal, _systems(world, real, server, tmp_path), "installed"))[0] == 0
            assert _trust_events(journal) == [
                {"system": "console", "address": f"127.0.0.1:{server.port}", "fingerprint": server.fingerprint}
            ]
            assert server.wizards == {"installation": 1}
    # The same address, another host key: a console in the middle, or a reinstalled node.
    async with ConsoleServer(world, deployment, CONSOLE_PASSWORD, reboot_s=0.05) as other:
        assert other.fingerprint != server.fingerprint
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            real = real_console(deployment, other, tmp_path)
            # The run's refresh of the installed Manager already meets the console: refused, nothing sent.
            code, why = await _drive(real, journal, _systems(world, real, other, tmp_path), "hardened")
            assert code == 1 and "host key not verified" in why, why
            assert len(_trust_events(journal)) == 1  # nothing trusted anew
        assert other.wizards == {} and other.logins == {}  # refused before the password was sent


async def test_the_managers_certificate_trusted_on_first_use_is_reported_once_and_pinned_afterwards(
    world: SimWorld, tmp_path: Path
) -> None:
    """pexip_api.trust_on_first_use without a pin: the first certificate is accepted and reported once; a
    client handed a journaled fingerprint that is not the Manager's refuses it, naming both, sending nothing."""
    deployment = make_deployment(1, tmp_path)
    systems = make_systems(world, deployment)
    await install_manager(systems, deployment)
    async with PexipServer(world, deployment, systems.directory, tmp_path / "pexip") as server:
        seen = fingerprint_of(ssl.PEM_cert_to_DER_cert(server.cert_file.read_text()))
        spec = dataclasses.replace(deployment.pexip_api, url=server.url, trust_on_first_use=True)
        first = HttpPexipApi(spec, retry_delay_s=0.01)
        try:
            assert (await first.get(CONFIG + "global/1/"))["resource_uri"] == CONFIG + "global/1/"
            await first.get(CONFIG + "global/1/")
            port = server.url.rsplit(":", 1)[1]
            assert first.first_use_trusts() == [FirstUseTrust("pexip_api", f"127.0.0.1:{port}", seen)]
            assert first.first_use_trusts() == []  # reported once
        finally:
            await first.aclose()
        wrong = "sha256:" + ":".join(["AB"] * 32)
        later = HttpPexipApi(spec, retry_delay_s=0.01)
        later.pin_first_use([FirstUseTrust("console", "x", "SHA256:other"), FirstUseTrust("pexip_api", "x", wrong)])
        try:
            before = sum(server.requests.values())
            with pytest.raises(Rejected, match="trusted on first use") as caught:
                await later.get(CONFIG + "global/1/")
            assert seen in str(caught.value) and wrong in str(caught.value)
            assert sum(server.requests.values()) == before and later.first_use_trusts() == []
        finally:
            await later.aclose()


def test_the_journal_gives_back_what_was_trusted(tmp_path: Path) -> None:
    """journaled_trusts reads every trust_on_first_use event back, oldest first, as the adapters take them."""
    from journal import Transition

    with api.open_journal(tmp_path / "journal.sqlite") as journal:
        payloads = [
            {"system": "console", "address": "127.0.0.1:22", "fingerprint": "SHA256:a"},
            {"system": "pexip_api", "address": "127.0.0.1:443", "fingerprint": "sha256:AB"},
        ]
        journal.commit([Transition(node=None, kind=kinds.TRUST_ON_FIRST_USE, payload=p) for p in payloads])
        assert journaled_trusts(journal) == [FirstUseTrust(**p) for p in payloads]  # type: ignore[arg-type]
