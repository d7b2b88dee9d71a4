"""The real SSH console client against the lab's SSH console server: host keys, prompts, drops, secrets."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh
import pytest
from _sim_factory import deploy_vm, make_deployment, make_systems, prompts
from _ssh_console import CONSOLE_PASSWORD, real_console, ssh_console

from adapters.console import SshConsole
from adapters.sim.servers.console_ssh import ConsoleServer
from adapters.sim.world import SimWorld
from config.errors import NotYet, Rejected, Unreachable
from config.model import Deployment


@pytest.fixture
async def booted(world: SimWorld, tmp_path: Path) -> Deployment:
    """A deployment whose Management Node VM runs BIOS-locked, no wizard done."""
    deployment = make_deployment(2, tmp_path)
    await deploy_vm(make_systems(world, deployment), deployment, deployment.management)
    return deployment


def _web(deployment: Deployment) -> str:
    assert deployment.pexip_api.admin_password is not None
    return deployment.pexip_api.admin_password.reveal()


async def _install(console: SshConsole, d: Deployment) -> None:
    await console.installation_wizard(d.management, _web(d), d.policy.installation_wizard.settings())


async def _secure(console: SshConsole, d: Deployment) -> None:
    await console.security_wizard(d.management, _web(d), prompts(d))


async def test_a_wrong_host_key_is_refused_before_any_answer(
    world: SimWorld, booted: Deployment, tmp_path: Path
) -> None:
    """A fingerprint that is not the server's: Rejected during the key exchange, no login tried, nothing typed."""
    other = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    async with ConsoleServer(world, booted, CONSOLE_PASSWORD) as server:
        console = SshConsole(real_console(booted, server, tmp_path, host_key_fingerprint=other), poll_s=0.02)
        with pytest.raises(Rejected, match="host key not verified"):
            await _install(console, booted)
        with pytest.raises(Rejected, match="host key not verified"):
            await console.wizard_state(booted.management)
        assert server.logins == {} and server.prompts_sent == 0 and server.state() == "unconfigured"
        assert console.pin.seen == server.fingerprint


async def test_a_known_hosts_file_pins_the_key(world: SimWorld, booted: Deployment, tmp_path: Path) -> None:
    """known_hosts with the server's key: accepted; with another key for the same host: refused."""
    async with ConsoleServer(world, booted, CONSOLE_PASSWORD) as server:
        good, bad = tmp_path / "known_hosts", tmp_path / "other_hosts"
        good.write_text(server.known_hosts_line())
        key = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()
        bad.write_text(f"[127.0.0.1]:{server.port} {key}\n")
        pinned = real_console(booted, server, tmp_path, host_key_fingerprint=None, known_hosts=str(good))
        assert await SshConsole(pinned).wizard_state(booted.management) == "unconfigured"
        wrong = real_console(booted, server, tmp_path, host_key_fingerprint=None, known_hosts=str(bad))
        with pytest.raises(Rejected, match="host key not verified"):
            await SshConsole(wrong).wizard_state(booted.management)
        assert server.logins == {"accepted": 1}


async def test_trust_on_first_use_pins_the_first_key(world: SimWorld, booted: Deployment, tmp_path: Path) -> None:
    """Only with trust_on_first_use: the first key is accepted, then pinned; without it no key is."""
    async with ConsoleServer(world, booted, CONSOLE_PASSWORD) as server:
        tofu = SshConsole(real_console(booted, server, tmp_path, host_key_fingerprint=None, trust_on_first_use=True))
        assert await tofu.wizard_state(booted.management) == "unconfigured"
        assert tofu.pin.fingerprint == server.fingerprint
        nothing = SshConsole(real_console(booted, server, tmp_path, host_key_fingerprint=None))
        with pytest.raises(Rejected, match="host key not verified"):
            await nothing.wizard_state(booted.management)


async def test_an_unexpected_prompt_stops_with_a_masked_transcript(
    world: SimWorld, booted: Deployment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A prompt the client does not know: Rejected naming it, the transcript shown with secrets masked."""
    caplog.set_level(logging.DEBUG)
    extra = ("hostname", "Enable IPv6 autoconfiguration [no]: ")
    async with ssh_console(world, booted, tmp_path, extra_prompt=extra) as (server, console):
        with pytest.raises(Rejected, match="unexpected prompt 'Enable IPv6 autoconfiguration") as info:
            await _install(console, booted)
        message = str(info.value)
        assert "> ********" in message and "Gateway [" in message  # what was typed before, the password masked
        assert CONSOLE_PASSWORD not in message and _web(booted) not in message
        assert await console.wizard_state(booted.management) == "unconfigured"
        assert server.wizards == {}
    assert CONSOLE_PASSWORD not in caplog.text and _web(booted) not in caplog.text


async def test_no_os_login_after_the_security_wizard(world: SimWorld, booted: Deployment, tmp_path: Path) -> None:
    """After securitywizard the right password is refused too; the client reads secured and offers no wizard."""
    async with ssh_console(world, booted, tmp_path) as (server, console):
        await _install(console, booted)
        await _secure(console, booted)
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect(
                "127.0.0.1", server.port, username="admin", password=CONSOLE_PASSWORD, known_hosts=None
            )
        assert await console.wizard_state(booted.management) == "secured"
        with pytest.raises(Rejected, match="no OS login"):
            await _secure(console, booted)
        assert server.wizards == {"installation": 1, "security": 1}


async def test_secrets_never_reach_the_logs(
    world: SimWorld, booted: Deployment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Both wizards with every logger at DEBUG (asyncssh's too): neither password appears."""
    caplog.set_level(logging.DEBUG)
    async with ssh_console(world, booted, tmp_path) as (server, console):
        await _install(console, booted)
        await _secure(console, booted)
    assert server.wizards == {"installation": 1, "security": 1}
    assert "asyncssh" in caplog.text  # the library did log
    assert CONSOLE_PASSWORD not in caplog.text and _web(booted) not in caplog.text


# --- a session dropped at a prompt: the node is re-read, each wizard completes once -------------


async def _like_the_engine(console: SshConsole, d: Deployment) -> int:
    """observe -> apply per step, retrying a retryable error as the engine does; returns the retries."""
    retries = 0
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("unconfigured", lambda: _install(console, d)),
        ("installed", lambda: _secure(console, d)),
    ]
    for before, apply in steps:
        for _ in range(5):
            try:
                if await console.wizard_state(d.management) != before:
                    break
                await apply()
                break
            except (Unreachable, NotYet):  # retryable: the engine tries the step again, observe first
                retries += 1
    return retries


async def _drop_at(prompt: int, world: SimWorld, deployment: Deployment, tmp_path: Path) -> None:
    async with ssh_console(world, deployment, tmp_path, drop_at_prompt=prompt) as (server, console):
        retries = await _like_the_engine(console, deployment)
        assert server.drop_at_prompt is None, f"prompt {prompt} was never reached"
        assert server.wizards == {"installation": 1, "security": 1}, f"dropped at prompt {prompt}"
        assert server.state() == "secured" and retries <= 1


# prompts of a clean run: 1 (state) 2-13 (installation) 14 (state after reboot) 15 (state) 16 (shell)
# 17-31 (securitywizard); a sample here, every one in the slow sweep.
@pytest.mark.parametrize("prompt", [1, 3, 13, 16, 17, 31])
async def test_a_session_dropped_at_a_prompt_is_resumed(
    prompt: int, world: SimWorld, booted: Deployment, tmp_path: Path
) -> None:
    """The connection cut instead of prompt N: the wizard is answered again from the start, completed once."""
    await _drop_at(prompt, world, booted, tmp_path)


@pytest.mark.slow
async def test_every_prompt_dropped_in_turn(tmp_path: Path) -> None:
    """Each prompt of a whole run cut in turn, each on a fresh world: both wizards complete exactly once."""
    for prompt in range(1, 60):
        world, deployment = await _fresh(tmp_path / str(prompt))
        try:
            async with ssh_console(world, deployment, tmp_path / str(prompt), drop_at_prompt=prompt) as (srv, c):
                await _like_the_engine(c, deployment)
                assert srv.wizards == {"installation": 1, "security": 1}, f"dropped at prompt {prompt}"
                if srv.drop_at_prompt is not None:  # a run has fewer prompts: every one was cut once
                    assert prompt > 25
                    return
        finally:
            await world.aclose()
    raise AssertionError("a run asked more than 60 prompts")


async def _fresh(path: Path) -> tuple[SimWorld, Deployment]:
    path.mkdir(parents=True, exist_ok=True)
    world = SimWorld.open(path / "world.sqlite")
    deployment = make_deployment(2, path)
    await deploy_vm(make_systems(world, deployment), deployment, deployment.management)
    return world, deployment


async def test_a_wrong_console_password_is_not_read_as_secured(
    world: SimWorld, booted: Deployment, tmp_path: Path
) -> None:
    """A password the console refuses is a wrong console.admin_password, so the security wizard is never skipped."""
    async with ConsoleServer(world, booted, "another-Passw0rd-3") as server:
        console = SshConsole(real_console(booted, server, tmp_path))  # the fixture's CONSOLE_PASSWORD
        with pytest.raises(Rejected, match="refused the password of admin; check console.admin_password"):
            await console.wizard_state(booted.management)
        assert server.logins == {"refused": 1} and server.state() == "unconfigured"


async def test_prompts_are_answered_by_their_text_not_their_order(
    world: SimWorld, booted: Deployment, tmp_path: Path
) -> None:
    """A console asking both wizards in reverse order gets the same answers: the world records the policy's."""
    async with ssh_console(world, booted, tmp_path, reverse_prompts=True) as (server, console):
        await _install(console, booted)
        await _secure(console, booted)
        assert server.wizards == {"installation": 1, "security": 1}
    record = world.get("console:node", booted.management.name)
    assert record["security_answers"] == prompts(booted)
    assert record["installation_answers"]["hostname"] == booted.management.hostname
    assert record["installation_answers"]["enable_incident_reporting"] is False


async def test_the_console_moves_to_the_static_address(world: SimWorld, booted: Deployment, tmp_path: Path) -> None:
    """Before the installation wizard the node answers at console.address; afterwards only at its static address."""
    async with ConsoleServer(world, booted, CONSOLE_PASSWORD, reboot_s=0.05, static_host="127.0.0.2") as server:
        deployment = real_console(booted, server, tmp_path, address="127.0.0.1")
        deployment = dataclasses.replace(
            deployment, management=dataclasses.replace(deployment.management, address="127.0.0.2")
        )
        console = SshConsole(deployment, poll_s=0.02, timeout_s=5)
        assert await console.wizard_state(booted.management) == "unconfigured"
        await _install(console, booted)
        assert server.host == "127.0.0.2"
        await _secure(console, booted)
        assert await console.wizard_state(booted.management) == "secured"
        assert server.wizards == {"installation": 1, "security": 1}


async def test_a_restarted_server_keeps_its_key_and_the_node_its_state(
    world: SimWorld, booted: Deployment, tmp_path: Path
) -> None:
    """With a key file the fingerprint survives a restart; the state is the world's, so the client reads it on."""
    key = tmp_path / "lab" / "console_host_key"
    async with ConsoleServer(world, booted, CONSOLE_PASSWORD, reboot_s=0.05, key_file=key) as first:
        console = SshConsole(real_console(booted, first, tmp_path), poll_s=0.02, timeout_s=5)
        await _install(console, booted)
        fingerprint = first.fingerprint
    async with ConsoleServer(world, booted, CONSOLE_PASSWORD, key_file=key) as second:
        assert second.fingerprint == fingerprint and oct(key.stat().st_mode & 0o777) == "0o600"
        console = SshConsole(real_console(booted, second, tmp_path), poll_s=0.02, timeout_s=5)
        assert await console.wizard_state(booted.management) == "installed"


async def test_a_console_that_does_not_answer_is_not_yet(world: SimWorld, booted: Deployment, tmp_path: Path) -> None:
    """Nothing listening (a reboot window): wizard_state is NotYet at once, retryable; the engine waits."""
    async with ConsoleServer(world, booted, CONSOLE_PASSWORD) as server:
        console = SshConsole(real_console(booted, server, tmp_path), poll_s=0.02, timeout_s=5)
    with pytest.raises(NotYet, match="does not answer yet") as info:
        await console.wizard_state(booted.management)
    assert info.value.retryable
