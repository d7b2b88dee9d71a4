"""Lock-out (issue #9): the directory breaks just before each authentication step, and no one is locked out.

A private slapd backs the simulated Manager's LDAP logins (through the wiring, as in a real run). Just before
one of the four authentication steps starts, the directory is broken one of the ways the issue lists: slapd
stopped, the orchestrator's group deleted, the orchestrator taken out of that group, or its identity unknown
to LDAP (its user entry deleted, so the certificate names no one the directory knows). The run must stop with
the reason, and the Manager must be left in the last mode that let administrators in: the local admin while
the source still includes the local database and no client certificate is required, else (past
``client_certificate_auth``) the same LDAP-and-local certificate mode as before, whose logins come back
when the directory does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _slapd import Slapd, user_dn

from adapters.sim import SimPexipApi, SimWorld
from adapters.sim._pexip_login import Logins
from adapters.sim.world import pexip_system
from config.model import Deployment
from journal import Journal
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems

# A slapd and a run of the Management Node per case: about 0.7 s each, 16 cases.
pytestmark = pytest.mark.slow

AUTH = "/api/admin/configuration/v1/authentication/1/"
STEPS = ("ldap_connection", "ldap_role_mapping", "client_certificate_auth", "disable_local_auth")


class BreakBefore:
    """The world's fault hooks, plus one break of the directory just before ``step`` first starts."""

    def __init__(self, world: SimWorld, step: str, action: Any) -> None:
        self._world, self._step, self._action = world, step, action
        self.auth_before: dict[str, Any] | None = None  # authentication/1/ as the step found it

    def before_step(self, node: str, step: str) -> None:
        if step == self._step and self.auth_before is None:
            self.auth_before = dict(self._world.get(pexip_system("authentication"), "1") or {})
            self._action()
        self._world.before_step(node, step)

    def after_apply(self, node: str, step: str) -> None:
        self._world.after_apply(node, step)


def _read_write_group(deployment: Deployment) -> str:
    [dn] = [m.group_dn for m in deployment.ldap.role_mappings if "Read-write" in m.roles]
    return dn


BREAKS = {
    "stop slapd": lambda server, d: server.stop(),
    "delete its group": lambda server, d: server.delete(_read_write_group(d)),
    "take it out of its group": lambda server, d: server.remove_member(_read_write_group(d), user_dn(d.ldap)),
    "identity unknown to LDAP": lambda server, d: server.delete(user_dn(d.ldap)),
}
# What the failed step's error says, per break: the reason, never a bare "failed".
SAYS = {
    "stop slapd": ("cannot connect to LDAP server", "cannot bind to the LDAP server"),
    "delete its group": ("is not in the directory", "must map to Read-write", "refused"),
    "take it out of its group": ("must map to Read-write", "refused"),
    "identity unknown to LDAP": ("is not in the directory", "must map to Read-write", "refused"),
}


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("break_it", list(BREAKS))
async def test_a_directory_broken_before_an_authentication_step_stops_the_run_and_locks_no_one_out(
    slapd: tuple[Slapd, Deployment], world: SimWorld, tmp_path: Path, break_it: str, step: str
) -> None:
    """The run stops at that step or a later authentication step, saying why; authentication is left as the step
    found it, and whoever got in before still does (the local admin; past certificates, the certificate login once
    the directory is back)."""
    server, deployment = slapd
    hooks = BreakBefore(world, step, lambda: BREAKS[break_it](server, deployment))
    systems = open_systems(deployment, world, journal=tmp_path / "journal.sqlite")
    try:
        with Journal.open(tmp_path / "journal.sqlite") as journal:
            engine = Engine(deployment, journal, systems, clock=FakeClock(), hooks=hooks, auto_approve=True)
            report = await engine.run()
            failed = list(journal.events(kinds=["step_failed"]))
        assert report.exit_code == 1 and hooks.auth_before is not None
        assert failed and {e.step for e in failed} <= set(STEPS[STEPS.index(step) :]), [e.step for e in failed]
        error = failed[-1].payload["error"]
        assert any(s in error for s in SAYS[break_it]), error
        auth = await systems.pexip.get(AUTH)
        kept = {k: auth[k] for k in ("source", "client_certificate")}
        assert "LOCAL" in auth["source"].split("+"), kept  # the local database is never taken away on a failure
        if auth["client_certificate"] == "NO":
            local = await Logins(world, deployment, systems.directory, answer_when_down=True).current()
            assert local["local_why"] == "", local  # the local admin still logs in
        else:  # past client_certificate_auth: the certificate login of before, once the directory is back
            assert step == "disable_local_auth" and kept == {k: hooks.auth_before[k] for k in kept}
            if break_it == "stop slapd":
                server.start()
                fresh = SimPexipApi(world, deployment, systems.directory)
                assert "Read-write" in (await fresh.verify_login(use_client_cert=True)).split(",")
    finally:
        await systems.aclose()


@pytest.mark.parametrize("step", ["client_certificate_auth", "disable_local_auth"])
@pytest.mark.parametrize("break_it", list(BREAKS))
async def test_over_the_network_the_steps_that_need_a_certificate_login_lock_no_one_out(
    slapd: tuple[Slapd, Deployment], world: SimWorld, tmp_path: Path, break_it: str, step: str
) -> None:
    """The same breaks before the two steps that prove logins by mutual TLS, with the real Management API client
    against the lab's HTTPS server, whose logins bind to slapd on every request: the run stops saying why, and
    over the wire the local admin still gets in by HTTP Basic (before certificates) or the settings are those
    of before and the certificate login is back once slapd is (after)."""
    import dataclasses

    from _https_manager import https_manager

    from adapters.pexip import HttpPexipApi
    from orchestrator import api

    server, deployment = slapd
    hooks = BreakBefore(world, step, lambda: BREAKS[break_it](server, deployment))
    async with https_manager(world, deployment, tmp_path) as (real, manager, _):
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            report = await api.drive(real, journal, world=world, hooks=hooks, auto_approve=True, clock=FakeClock())
            failed = list(journal.events(kinds=["step_failed"]))
        assert report.exit_code == 1 and failed and {e.step for e in failed} <= set(STEPS[STEPS.index(step) :])
        assert any(s in failed[-1].payload["error"] for s in SAYS[break_it]), failed[-1].payload["error"]
        assert manager.ldap_binds > 0  # the Manager's LDAP logins asked slapd, request by request
        auth = world.get(pexip_system("authentication"), "1") or {}
        assert hooks.auth_before is not None and "LOCAL" in auth["source"].split("+")
        if auth["client_certificate"] == "NO":
            spec = dataclasses.replace(real.pexip_api, client_cert=None, client_key=None)
            local = HttpPexipApi(spec, ldap=real.ldap, retry_delay_s=0.01)
            try:
                assert (await local.get(GLOBAL))["resource_uri"] == GLOBAL  # HTTP Basic as the local admin
            finally:
                await local.aclose()
        else:
            assert step == "disable_local_auth"
            assert {k: auth[k] for k in ("source", "client_certificate")} == {
                k: hooks.auth_before[k] for k in ("source", "client_certificate")
            }
            if break_it == "stop slapd":
                server.start()
                again = HttpPexipApi(real.pexip_api, ldap=real.ldap, retry_delay_s=0.01)
                try:
                    assert (await again.get(GLOBAL))["resource_uri"] == GLOBAL  # by client certificate
                finally:
                    await again.aclose()


GLOBAL = "/api/admin/configuration/v1/global/1/"
