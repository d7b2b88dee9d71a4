"""A whole run whose Management Node is taken through both wizards over SSH, by the real console client."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.sim.servers.console_ssh import ConsoleServer
from adapters.sim.world import SimWorld
from config.load import simulated_deployment
from orchestrator import api
from orchestrator.clock import FakeClock
from tests.adapters._ssh_console import CONSOLE_PASSWORD, real_console


@pytest.mark.slow  # the client polls a rebooting console every second (two reboots)
async def test_a_run_takes_the_manager_to_hardened_over_ssh(tmp_path: Path) -> None:
    """console.mode = "real": installation wizard and securitywizard each once over SSH; a rerun changes nothing."""
    deployment = simulated_deployment(2, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        async with ConsoleServer(world, deployment, CONSOLE_PASSWORD, reboot_s=0.05) as server:
            real = real_console(deployment, server, tmp_path)
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


class _Crash(BaseException):
    """The process dies: nothing after this point runs, the journal does not commit the step."""


class _CrashAfter:
    """The world's hooks, plus one crash right after ``step``'s side effects (before the journal commits them)."""

    def __init__(self, world: SimWorld, step: str):
        self._world, self._step, self.fired = world, step, False

    def before_step(self, node: str, step: str) -> None:
        self._world.before_step(node, step)

    def after_apply(self, node: str, step: str) -> None:
        self._world.after_apply(node, step)
        if step == self._step and not self.fired:
            self.fired = True
            raise _Crash(step)


@pytest.mark.slow  # two reboots polled every second, twice
@pytest.mark.parametrize("step", ["installation_wizard", "security_wizard"])
async def test_a_crash_after_a_wizard_does_not_answer_it_twice(tmp_path: Path, step: str) -> None:
    """The orchestrator dies after the wizard's last answer, before its commit: the resumed run reads the
    console, sees the wizard done, and goes on without answering it again."""
    deployment = simulated_deployment(2, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        async with ConsoleServer(world, deployment, CONSOLE_PASSWORD, reboot_s=0.05) as server:
            real = real_console(deployment, server, tmp_path)
            hooks = _CrashAfter(world, step)
            with pytest.raises(BaseException) as died:
                with api.open_journal(tmp_path / "journal.sqlite") as journal:
                    await api.drive(real, journal, world=world, hooks=hooks, auto_approve=True, clock=FakeClock())
            assert hooks.fired, died.value
            with api.open_journal(tmp_path / "journal.sqlite") as journal:
                report = await api.drive(
                    real, journal, world=world, hooks=world, auto_approve=True, clock=FakeClock(), until="hardened"
                )
                assert report.exit_code == 0
                assert {r.name: r.state for r in journal.nodes()}[deployment.management.name] == "hardened"
            assert server.wizards == {"installation": 1, "security": 1}
    finally:
        await world.aclose()
