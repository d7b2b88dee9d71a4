"""Faults on the wire during whole runs over the real clients: 500, 429, a connection dropped mid-request (its
write applied or not), a worker_vm answer lost with the connection, and a Manager that reboots slower than
the clients expect. The run ends as a clean one does, with no write twice and each wizard once."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.console import SshConsole
from adapters.sim import SimDirectory
from adapters.sim.pexip import SimPexipApi
from adapters.sim.servers._pexip_auth import make_client_identity
from adapters.sim.servers.console_ssh import ConsoleServer
from adapters.sim.servers.pexip_http import PexipServer
from adapters.sim.servers.provisioning_http import ProvisioningServers
from adapters.sim.world import SimWorld
from config.load import simulated_deployment
from config.model import Deployment
from config.secrets import Secret
from journal import kinds
from orchestrator import api
from orchestrator.clock import FakeClock, SystemClock
from orchestrator.wiring import open_systems
from tests.adapters._ssh_console import CONSOLE_PASSWORD, real_console

CONFIG = "/api/admin/configuration/v1/"


@contextlib.asynccontextmanager
async def _over_the_wire(
    tmp_path: Path, nodes: int, *, reboot_s: float = 0.0
) -> AsyncIterator[tuple[Deployment, SimWorld, PexipServer]]:
    """A simulated deployment whose pexip_api and provisioning are real, against the lab's servers."""
    deployment = simulated_deployment(nodes, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    client = make_client_identity(tmp_path / "client", deployment.ldap.verify_user, deployment.ldap.client_certificate)
    servers = ProvisioningServers(world, deployment, tmp_path / "provisioning", poll_s=0.002)
    manager = PexipServer(
        world,
        deployment,
        SimDirectory(world, deployment),
        tmp_path / "pexip",
        client_ca_file=client.ca_file,
        reboot_s=reboot_s,
    )
    try:
        await servers.start()
        await manager.__aenter__()
        port = manager.url.rsplit(":", 1)[1]
        pexip_api = dataclasses.replace(
            deployment.pexip_api,
            mode="real",
            url=f"https://{deployment.management.fqdn}:{port}",
            address="127.0.0.1",
            ca_file=str(manager.cert_file),
            client_cert=str(client.cert_file),
            client_key=Secret(f"file:{client.key_file}"),
        )
        conferencing = tuple(
            dataclasses.replace(
                n, provisioning_url=servers.url(n.name), provisioning_thumbprint=servers.thumbprint(n.name)
            )
            for n in deployment.conferencing
        )
        yield dataclasses.replace(deployment, conferencing=conferencing, pexip_api=pexip_api), world, manager
    finally:
        await manager.__aexit__(None, None, None)
        await servers.aclose()
        await world.aclose()


def _duplicates(objects: list[dict[str, Any]]) -> list[str]:
    """Objects equal but for their id and URI (a write sent twice)."""
    shapes = collections.Counter(
        repr(sorted((k, repr(v)) for k, v in o.items() if k not in ("id", "resource_uri"))) for o in objects
    )
    return [shape for shape, n in shapes.items() if n > 1]


async def test_500_429_and_connections_dropped_mid_request_leave_a_run_as_a_clean_one(tmp_path: Path) -> None:
    """Injected on the Manager's wire: a 500 and a dropped connection on reads, a 429 on a PATCH, a POST applied
    but its answer cut, and the worker_vm POST applied with its answer (the only bootstrap file) cut. Every node
    reaches the end; the lost file is recovered by DELETE and a new worker_vm (journaled); nothing is created
    twice; a rerun sends no write."""
    async with _over_the_wire(tmp_path, 2) as (real, world, manager):
        manager.faults = [
            ("GET", CONFIG, "500"),
            ("GET", CONFIG, "drop"),
            ("PATCH", CONFIG, "429"),
            ("POST", CONFIG + "dns_server/", "drop_after"),
            ("POST", CONFIG + "worker_vm/", "drop_after"),
        ]
        conf = real.conferencing[0].name
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            report = await api.drive(real, journal, world=world, hooks=world, auto_approve=True, clock=FakeClock())
            assert report.exit_code == 0, report.outcomes
            assert {r.state for r in journal.nodes()} == {"ldap_authenticated"}
            assert manager.faults == [] and len(manager.faults_fired) == 5
            changed = [
                c
                for e in journal.events(node=conf, kinds=[kinds.STEP_COMMITTED])
                for c in e.payload.get("changed", [])
                if c["field"] == "worker_vm"
            ]
            assert any("again" in str(c["wanted"]) or "lost" in str(c["now"]) for c in changed), changed
        twin = SimPexipApi(world, real, SimDirectory(world, real))
        for resource in ("dns_server", "ntp_server", "syslog_server", "worker_vm"):
            objects = await twin.list_objects(resource)
            assert objects and not _duplicates(objects), resource
        assert len(await twin.list_objects("worker_vm")) == len(real.conferencing)
        writes = manager.writes()
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            again = await api.drive(real, journal, world=world, hooks=world, auto_approve=True, clock=FakeClock())
            assert again.exit_code == 0
        assert manager.writes() == writes  # the rerun sent no POST, PATCH or DELETE


@pytest.mark.slow  # two reboot windows of 1.5 s, waited for in real time
async def test_a_manager_rebooting_slower_than_expected_is_waited_for_and_each_wizard_runs_once(
    tmp_path: Path,
) -> None:
    """Both wizards over SSH, the Manager down 1.5 s after each (its console refusing connections, its API
    answering 503), far longer than the clients' polls: the run waits (bounded by retry.wait_timeout_s), each
    wizard is answered exactly once and the Manager ends hardened."""
    async with _over_the_wire(tmp_path, 1, reboot_s=1.5) as (deployment, world, manager):
        async with ConsoleServer(world, deployment, CONSOLE_PASSWORD, reboot_s=1.5) as console_server:
            retry = dataclasses.replace(
                deployment.policy.retry, initial_backoff_s=0.05, max_backoff_s=0.2, wait_timeout_s=30
            )
            real = real_console(deployment, console_server, tmp_path)
            real = dataclasses.replace(real, policy=dataclasses.replace(deployment.policy, retry=retry))
            systems = open_systems(real, world)
            systems.console = SshConsole(real, poll_s=0.05, timeout_s=5)
            try:
                with api.open_journal(tmp_path / "journal.sqlite") as journal:
                    report = await api.drive(
                        real,
                        journal,
                        systems=systems,
                        hooks=world,
                        auto_approve=True,
                        clock=SystemClock(),
                        until="hardened",
                        check_first=False,
                    )
                    assert report.exit_code == 0, report.outcomes
                    assert journal.node(real.management.name).state == "hardened"
            finally:
                await systems.aclose()
            assert console_server.wizards == {"installation": 1, "security": 1}
            assert manager.requests[("GET", 503)] > 0  # the API was down after the reboots, and waited for
