"""The Console contract: the installation and security wizards as every node console client shows them."""

from __future__ import annotations

import pytest
from _contract import ConsoleCase

from adapters.base import Console
from config.errors import Rejected


async def _install(case: ConsoleCase) -> None:
    await case.console.installation_wizard(
        case.deployment.management, case.admin_password, dict(case.installation_answers)
    )


async def _secure(case: ConsoleCase, password: str | None = None) -> None:
    await case.console.security_wizard(
        case.deployment.management, password or case.admin_password, dict(case.security_answers)
    )


def test_is_a_console(console_case: ConsoleCase) -> None:
    """The implementation satisfies the Console protocol."""
    assert isinstance(console_case.console, Console)


async def test_the_wizards_move_the_state_forward(console_case: ConsoleCase) -> None:
    """unconfigured, then installed after the installation wizard, then secured after the security wizard."""
    node = console_case.deployment.management
    assert await console_case.console.wizard_state(node) == "unconfigured"
    await _install(console_case)
    assert await console_case.console.wizard_state(node) == "installed"
    await _secure(console_case)
    assert await console_case.console.wizard_state(node) == "secured"


async def test_the_security_wizard_needs_the_installation_first(console_case: ConsoleCase) -> None:
    """A security wizard before the installation wizard is Rejected and the node stays unconfigured."""
    with pytest.raises(Rejected):
        await _secure(console_case)
    assert await console_case.console.wizard_state(console_case.deployment.management) == "unconfigured"


async def test_a_done_installation_wizard_is_not_answered_again(console_case: ConsoleCase) -> None:
    """A second installation wizard is Rejected: the node keeps the admin password of the first."""
    node = console_case.deployment.management
    await _install(console_case)
    with pytest.raises(Rejected):
        await console_case.console.installation_wizard(
            node, "another-Passw0rd-9", dict(console_case.installation_answers)
        )
    assert await console_case.console.wizard_state(node) == "installed"
    # The second run set nothing: the web login is still the first run's password.
    assert await console_case.api.verify_login(use_client_cert=False)
    if console_case.kind == "sim":  # the twin checks it at its security wizard; a console asks its own password
        with pytest.raises(Rejected):
            await _secure(console_case, "another-Passw0rd-9")
    await _secure(console_case)


async def test_after_the_security_wizard_there_is_no_os_login(console_case: ConsoleCase) -> None:
    """Once secured, neither wizard is offered again and the state still reads secured."""
    node = console_case.deployment.management
    await _install(console_case)
    await _secure(console_case)
    with pytest.raises(Rejected):
        await _secure(console_case)
    with pytest.raises(Rejected):
        await _install(console_case)
    assert await console_case.console.wizard_state(node) == "secured"


async def test_aclose_is_idempotent(console_case: ConsoleCase) -> None:
    """aclose after use, and again, raises nothing (the fixture closes a third time)."""
    await console_case.console.wizard_state(console_case.deployment.management)
    await console_case.console.aclose()
    await console_case.console.aclose()
