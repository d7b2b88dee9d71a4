"""A whole run of the Management Node with ``ldap.mode = "real"``: the engine against a private slapd.

The simulated Manager asks slapd (through the wiring) who may log in, so the authentication
steps are proven against a real directory; when the directory does not back the orchestrator's
identity, or cannot be reached, the run stops with the reason and administrators still get in
the way they did before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _slapd import Slapd, user_dn

from adapters.base import Systems
from adapters.sim import SimPexipApi, SimWorld
from config.model import Deployment
from journal import Journal
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems

# End to end: the engine, the simulated world and a slapd per test (about 0.5 s each, 3 s in all).
pytestmark = pytest.mark.slow

AUTH = "/api/admin/configuration/v1/authentication/1/"


async def _run(deployment: Deployment, world: SimWorld, journal_path: Path) -> tuple[int, list[Any], Systems]:
    """One run of every node to its target (gates approved); returns the exit code, the failed steps and the
    systems (still open: the caller closes them)."""
    systems = open_systems(deployment, world, journal=journal_path)
    with Journal.open(journal_path) as journal:
        report = await Engine(deployment, journal, systems, clock=FakeClock(), hooks=world, auto_approve=True).run()
        failed = list(journal.events(kinds=["step_failed"]))
    return report.exit_code, failed, systems


def _group(deployment: Deployment, role: str) -> str:
    [dn] = [m.group_dn for m in deployment.ldap.role_mappings if role in m.roles]
    return dn


async def test_a_run_with_real_ldap_reaches_ldap_authenticated(
    slapd: tuple[Slapd, Deployment], world: SimWorld, tmp_path: Path
) -> None:
    """The Manager ends LDAP-only with client certificates; its LDAP logins get the roles of the slapd groups."""
    _, deployment = slapd
    code, failed, systems = await _run(deployment, world, tmp_path / "journal.sqlite")
    try:
        assert (code, failed) == (0, [])
        with Journal.open(tmp_path / "journal.sqlite") as journal:
            assert {n.name: n.state for n in journal.nodes()} == {deployment.management.name: "ldap_authenticated"}
        auth = await systems.pexip.get(AUTH)
        assert (auth["source"], auth["client_certificate"]) == ("LDAP", deployment.ldap.client_certificate)
        fresh = SimPexipApi(world, deployment, systems.directory)  # a twin with nothing cached: asks slapd now
        assert await fresh.verify_login(use_client_cert=True) == "Auditor,Read-only,Read-write"
    finally:
        await systems.aclose()


@pytest.mark.parametrize(
    ("break_it", "step", "says"),
    [
        # the orchestrator's identity out of the Read-write group: certificates would lock it out
        ("leave read-write", "client_certificate_auth", "must map to Read-write"),
        # a mapped group the directory does not hold
        ("delete auditor group", "ldap_role_mapping", "is not in the directory"),
        # the directory cannot be reached at all
        ("stop slapd", "ldap_connection", "cannot connect to LDAP server 127.0.0.1"),
    ],
)
async def test_a_directory_that_cannot_back_the_next_step_stops_the_run_and_keeps_the_local_login(
    slapd: tuple[Slapd, Deployment], world: SimWorld, tmp_path: Path, break_it: str, step: str, says: str
) -> None:
    """The run fails at the step the directory cannot back, naming why; the platform still takes the local admin
    without a client certificate (LDAP+LOCAL at most), so no one is locked out."""
    server, deployment = slapd
    if break_it == "leave read-write":
        server.remove_member(_group(deployment, "Read-write"), user_dn(deployment.ldap))
    elif break_it == "delete auditor group":
        server.delete(_group(deployment, "Auditor"))
    else:
        server.stop()
    code, failed, systems = await _run(deployment, world, tmp_path / "journal.sqlite")
    try:
        assert code == 1
        assert [e.step for e in failed] == [step]
        assert says in failed[0].payload["error"]
        auth = await systems.pexip.get(AUTH)  # answered: the local admin still logs in
        assert "LOCAL" in auth["source"].split("+") and auth["client_certificate"] == "NO"
    finally:
        await systems.aclose()


@pytest.mark.parametrize(
    ("break_it", "field"),
    [
        ("delete auditor group", "ldap.role_mappings"),  # a mapped group the directory does not hold
        ("wrong bind password", "ldap"),  # the service account is refused
    ],
)
async def test_a_directory_mistake_is_found_before_the_first_step(
    slapd: tuple[Slapd, Deployment], world: SimWorld, tmp_path: Path, break_it: str, field: str
) -> None:
    """Issue #7, build 7: a real directory is checked in the preflight, so the mistake stops the run before any VM
    is touched (not after the irreversible security wizard); exit 2 naming the field."""
    import dataclasses

    from config.errors import ConfigError
    from config.secrets import Secret
    from orchestrator import api

    server, deployment = slapd
    if break_it == "delete auditor group":
        server.delete(_group(deployment, "Auditor"))
    else:
        wrong = tmp_path / "wrong-bind-password"
        wrong.write_text("not-the-password\n")
        ldap = dataclasses.replace(deployment.ldap, bind_password=Secret(f"file:{wrong}"))
        deployment = dataclasses.replace(deployment, ldap=ldap)
    systems = open_systems(deployment, world, journal=tmp_path / "journal.sqlite")
    try:
        with Journal.open(tmp_path / "journal.sqlite") as journal:
            with pytest.raises(ConfigError) as info:
                await api.drive(deployment, journal, systems=systems, hooks=world, clock=FakeClock(), auto_approve=True)
            assert [f for f, _ in info.value.problems if f.startswith(field)], info.value.problems
            assert list(journal.events(kinds=["step_started"])) == []
        assert world.effects_summary() == {} or not any(world.effects_summary().values())
    finally:
        await systems.aclose()
