"""disable_local_auth puts the local database back when the login it proved fails once local login is gone,
where the Manager still lets the orchestrator in to do it; else it says so and how to recover."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from adapters.sim import SimDirectory, SimPexipApi, SimWorld
from adapters.sim.world import pexip_system
from config.errors import Unreachable
from config.load import simulated_deployment
from journal import Journal
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems


class ChangesOnceLdapOnly:
    """The Manager's view of the directory, which changes the instant the authentication source becomes LDAP
    alone: the orchestrator's identity gone for good (``forget``), or the server down for one search
    (``down_once``); else as it is."""

    def __init__(self, world: SimWorld, directory: SimDirectory, *, forget: bool, down_once: bool) -> None:
        self._world, self._directory, self._forget = world, directory, forget
        self.down_once = down_once

    async def verify_bind(self) -> None:
        await self._directory.verify_bind()

    async def group_exists(self, dn: str) -> bool:
        return await self._directory.group_exists(dn)

    async def user_groups(self, user: str) -> list[str]:
        if (self._world.get(pexip_system("authentication"), "1") or {}).get("source") == "LDAP":
            if self._forget:
                return []
            if self.down_once:
                self.down_once = False
                raise Unreachable("cannot connect to LDAP server (test: down for one search)", system="ldap")
        return await self._directory.user_groups(user)

    async def aclose(self) -> None:
        await self._directory.aclose()


async def _run(
    tmp_path: Path, *, forget: bool = False, down_once: bool = False
) -> tuple[int, list[Any], dict[str, Any]]:
    """A run of the Management Node; its exit code, its failed and retried steps, authentication at the end."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    deployment = simulated_deployment(1, tmp_path / "w.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        systems = open_systems(deployment, world)
        view = ChangesOnceLdapOnly(world, SimDirectory(world, deployment), forget=forget, down_once=down_once)
        systems = dataclasses.replace(systems, pexip=SimPexipApi(world, deployment, view))
        with Journal.open(tmp_path / "journal.sqlite") as journal:
            report = await Engine(deployment, journal, systems, clock=FakeClock(), hooks=world, auto_approve=True).run()
            failed = list(journal.events(kinds=["step_failed", "step_retry"]))
        await systems.aclose()
        auth = dict(world.get(pexip_system("authentication"), "1") or {})
        return report.exit_code, failed, {**auth, "changes": world.version(pexip_system("authentication"))}
    finally:
        await world.aclose()


async def test_a_directory_down_for_the_last_proof_puts_local_back_and_the_retry_finishes(tmp_path: Path) -> None:
    """The second proof of disable_local_auth meets a directory that does not answer: the source goes back to
    LDAP and local (the local database still a way in), the step is retried, proves both logins, and ends LDAP
    alone."""
    code, failed, auth = await _run(tmp_path / "down", down_once=True)
    _, _, steady = await _run(tmp_path / "steady")
    assert code == 0 and auth["source"] == "LDAP"
    assert [(e.kind, e.step) for e in failed] == [("step_retry", "disable_local_auth")]
    assert "cannot connect to LDAP server" in failed[0].payload["error"]
    assert auth["changes"] == steady["changes"] + 2  # the local database put back, then taken away once proven


async def test_an_identity_gone_the_instant_local_is_gone_is_named_with_how_to_recover(tmp_path: Path) -> None:
    """When the proof fails because the identity itself is gone, the Manager takes no request from anyone, not
    even the one putting the local database back (what the proofs before are there to prevent): the step fails
    saying both, and how to recover."""
    code, failed, auth = await _run(tmp_path, forget=True)
    assert code == 1 and auth["source"] == "LDAP"
    error = failed[-1].payload["error"]
    assert failed[-1].step == "disable_local_auth" and "is not in the directory" in error
    assert "back to LDAP+LOCAL was refused too" in error and "fallback deployment" in error
