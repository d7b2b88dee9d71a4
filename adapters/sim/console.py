"""The simulated node console: the installation and security wizards of the guide.

Per node (system ``console:node``): ``unconfigured`` until the installation wizard,
``installed`` after it, ``secured`` after the security wizard, which also removes console
login for good. Conferencing Nodes have no wizards here: their configuration comes from
the Management Node, so they read ``installed`` once their VM runs.
"""

from __future__ import annotations

from typing import Any

from adapters.base import WizardState
from adapters.sim._manager import management_node_defaults
from adapters.sim.world import CONSOLE, VM, Effect, SimWorld, digest
from config.errors import Rejected
from config.model import CONFERENCING, Deployment, NodeSpec

__all__ = ["SimConsole"]

_SYSTEM = "console"


class SimConsole:
    """Twin of :class:`adapters.base.Console` over a :class:`SimWorld`."""

    def __init__(self, world: SimWorld, deployment: Deployment):
        self._world = world
        self._deployment = deployment

    async def wizard_state(self, node: NodeSpec) -> WizardState:
        await self._world.call(_SYSTEM, f"console of {node.name}", change=False)
        if node.role == CONFERENCING:
            vm = self._world.get(VM, node.name)
            return "installed" if vm is not None and vm["power_state"] == "poweredOn" else "unconfigured"
        state = self._world.get(CONSOLE, node.name) or {}
        return state.get("wizard_state", "unconfigured")  # type: ignore[no-any-return]

    async def installation_wizard(self, node: NodeSpec, admin_password: str, answers: dict[str, Any]) -> None:
        """Answer the installation wizard; the Management Node then boots with its defaults.

        Raises:
            Rejected: a Conferencing Node, a VM not running with its BIOS locked, a wizard
                already done, or answers that the guide forbids.
        """
        await self._world.call(_SYSTEM, f"installation wizard on {node.name}", change=True)
        self._refuse_conferencing(node, "installation")
        state = self._world.get(CONSOLE, node.name) or {}
        if state.get("wizard_state", "unconfigured") != "unconfigured":
            raise Rejected(
                f"{node.name}: the installation wizard already ran (state {state['wizard_state']}); "
                "it is not offered again",
                system=_SYSTEM,
            )
        vm = self._world.get(VM, node.name)
        if vm is None or vm["power_state"] != "poweredOn" or not vm["bios"]["locked_marker"]:
            raise Rejected(
                f"{node.name}: no console to answer: the VM must be imported, powered on and its BIOS locked first",
                system=_SYSTEM,
            )
        if len(admin_password) < 8:
            raise Rejected(
                f"{node.name}: the admin password is refused: it must have at least 8 characters", system=_SYSTEM
            )
        problems = _installation_problems(answers)
        if problems:
            raise Rejected(f"{node.name}: installation wizard answers refused: {'; '.join(problems)}", system=_SYSTEM)
        record = {
            "wizard_state": "installed",
            "admin_password_sha256": digest(admin_password),
            "console_login": True,
            "installation_answers": dict(answers),
        }
        await self._world.apply(
            [(CONSOLE, node.name, record), *management_node_defaults(self._deployment)],
            [Effect(node.name, "installation_wizard", "")],
        )

    async def security_wizard(
        self, node: NodeSpec, admin_password: str, answers: dict[str, Any], *, console_login: bool = False
    ) -> None:
        """Answer the security wizard (irreversible: console login is gone afterwards).

        ``console_login``: the SSH console server (adapters/sim/servers/console_ssh.py) already
        checked the console admin password at login; the web administrator's is then not asked.

        Raises:
            Rejected: a Conferencing Node, a node not ``installed``, a wrong admin password,
                or answers missing one of the policy's security_wizard prompts.
        """
        await self._world.call(_SYSTEM, f"security wizard on {node.name}", change=True)
        self._refuse_conferencing(node, "security")
        state = self._world.get(CONSOLE, node.name) or {}
        current = state.get("wizard_state", "unconfigured")
        if current == "secured":
            raise Rejected(
                f"{node.name}: console login refused: the security wizard already disabled OS access", system=_SYSTEM
            )
        if current != "installed":
            raise Rejected(f"{node.name}: run the installation wizard first (state {current})", system=_SYSTEM)
        if not console_login and digest(admin_password) != state["admin_password_sha256"]:
            raise Rejected(f"{node.name}: console login refused: wrong admin password", system=_SYSTEM)
        prompts = list(self._deployment.policy.security_wizard.settings())
        missing = [k for k in prompts if k not in answers]
        if missing:
            raise Rejected(
                f"{node.name}: security wizard answers refused: no answer to {', '.join(missing)}; "
                "answer every prompt of policy.security_wizard",
                system=_SYSTEM,
            )
        record = {**state, "wizard_state": "secured", "console_login": False, "security_answers": dict(answers)}
        await self._world.apply([(CONSOLE, node.name, record)], [Effect(node.name, "security_wizard", "")])

    async def aclose(self) -> None:
        """Nothing to release: the state is in the world."""

    async def __aenter__(self) -> SimConsole:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _refuse_conferencing(self, node: NodeSpec, wizard: str) -> None:
        if node.role == CONFERENCING:
            raise Rejected(
                f"{node.name} is a Conferencing Node: it has no {wizard} wizard; its configuration "
                "comes from the Management Node",
                system=_SYSTEM,
            )


def _installation_problems(answers: dict[str, Any]) -> list[str]:
    """The guide: incident reporting no, deployment and usage statistics no."""
    problems = []
    for words, label in (
        (("incident",), "Enable incident reporting"),
        (("statistic", "usage"), "Send deployment and usage statistics to Pexip"),
    ):
        keys = [k for k in answers if any(w in k.lower() for w in words)]
        if not keys:
            problems.append(f"no answer to {label!r}")
        problems += [f"{k} must be no (got {answers[k]!r})" for k in keys if answers[k] is not False]
    return problems
