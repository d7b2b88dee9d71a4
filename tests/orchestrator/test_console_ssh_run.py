"""A whole run whose Management Node is taken through both wizards over SSH, by the real console client."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from adapters.sim.servers.console_ssh import ConsoleServer
from adapters.sim.world import SimWorld
from config.load import simulated_deployment
from config.secrets import Secret
from orchestrator import api
from orchestrator.clock import FakeClock

CONSOLE_PASSWORD = "console-Passw0rd-7"


@pytest.mark.slow  # the client polls a rebooting console every second (two reboots)
async def test_a_run_takes_the_manager_to_hardened_over_ssh(tmp_path: Path) -> None:
    """console.mode = "real": installation wizard and securitywizard each once over SSH; a rerun changes nothing."""
    deployment = simulated_deployment(2, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    (tmp_path / "console-password").write_text(CONSOLE_PASSWORD + "\n")
    try:
        async with ConsoleServer(world, deployment, CONSOLE_PASSWORD, reboot_s=0.05) as server:
            console = dataclasses.replace(
                deployment.console,
                mode="real",
                address="127.0.0.1",
                port=server.port,
                admin_password=Secret(f"file:{tmp_path / 'console-password'}"),
                host_key_fingerprint=server.fingerprint,
            )
            real = dataclasses.replace(deployment, console=console)
            for _ in range(2):
                with api.open_journal(tmp_path / "journal.sqlite") as journal:
                    report = await api.drive(
                        real, journal, world=world, hooks=world, auto_approve=True, clock=FakeClock(), until="hardened"
                    )
                    assert report.exit_code == 0
                    states = {r.name: r.state for r in journal.nodes()}
                    assert states[deployment.management.name] == "hardened"
            assert server.wizards == {"installation": 1, "security": 1}
            assert server.state() == "secured"
    finally:
        await world.aclose()
