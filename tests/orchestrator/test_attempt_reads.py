"""A step attempt asks the Manager each thing once before it writes, and verify always reads the world afresh."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from adapters.base import Created, PexipApi
from adapters.sim import SimWorld
from config.load import simulated_deployment
from config.model import Deployment
from orchestrator import api
from orchestrator.clock import FakeClock
from orchestrator.steps import STEPS, Change, Step, StepContext, execute, plan_step
from orchestrator.steps._reads import AttemptReads
from orchestrator.wiring import open_systems


class _Counting:
    """The Manager's twin, with every request that reaches it written down (not a mock: each call is the twin's)."""

    def __init__(self, twin: PexipApi) -> None:
        self.twin = twin
        self.requests: list[tuple[str, str]] = []

    async def list_objects(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        self.requests.append(("GET", f"{resource}/{sorted(filters.items())}"))
        return await self.twin.list_objects(resource, **filters)

    async def get(self, uri: str) -> dict[str, Any]:
        self.requests.append(("GET", uri))
        return await self.twin.get(uri)

    async def create(self, resource: str, fields: dict[str, Any]) -> Created:
        self.requests.append(("POST", resource))
        return await self.twin.create(resource, fields)

    async def patch(self, uri: str, fields: dict[str, Any]) -> None:
        self.requests.append(("PATCH", uri))
        await self.twin.patch(uri, fields)

    async def delete(self, uri: str) -> None:
        self.requests.append(("DELETE", uri))
        await self.twin.delete(uri)

    async def status(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        self.requests.append(("STATUS", resource))
        return await self.twin.status(resource, **filters)

    async def verify_login(self, *, use_client_cert: bool) -> str:
        self.requests.append(("LOGIN", str(use_client_cert)))
        return await self.twin.verify_login(use_client_cert=use_client_cert)

    async def aclose(self) -> None:
        await self.twin.aclose()

    def reads(self) -> list[str]:
        return [what for verb, what in self.requests if verb == "GET"]


@dataclasses.dataclass
class _Manager:
    deployment: Deployment
    world: SimWorld
    pexip: _Counting

    def context(self) -> StepContext:
        systems = open_systems(self.deployment, self.world)
        return StepContext(self.deployment, self.deployment.management, dataclasses.replace(systems, pexip=self.pexip))


async def _manager(tmp_path: Path, until: str) -> AsyncIterator[_Manager]:
    deployment = simulated_deployment(1, tmp_path / "w.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            report = await api.drive(
                deployment, journal, world=world, hooks=world, until=until, auto_approve=True, clock=FakeClock()
            )
        assert report.exit_code == 0
        yield _Manager(deployment, world, _Counting(open_systems(deployment, world).pexip))
    finally:
        await world.aclose()


@pytest.fixture
async def installed(tmp_path: Path) -> AsyncIterator[_Manager]:
    """A simulated Management Node through its installation wizard: its API answers."""
    async for manager in _manager(tmp_path, "installed"):
        yield manager


@pytest.fixture
async def hardened(tmp_path: Path) -> AsyncIterator[_Manager]:
    """A simulated Management Node hardened: the certificate steps come next."""
    async for manager in _manager(tmp_path, "hardened"):
        yield manager


async def test_a_repeated_read_before_any_write_reaches_the_manager_once(installed: _Manager) -> None:
    """The same list or object asked twice is one request; other filters are another one."""
    reads = AttemptReads(installed.pexip)
    first = await reads.list_objects("system_location", name="London")
    assert await reads.list_objects("system_location", name="London") == first
    await reads.list_objects("system_location", name="Oslo")
    await reads.get("/api/admin/configuration/v1/global/1/")
    await reads.get("/api/admin/configuration/v1/global/1/")
    assert installed.pexip.reads() == [
        "system_location/[('name', 'London')]",
        "system_location/[('name', 'Oslo')]",
        "/api/admin/configuration/v1/global/1/",
    ]


async def test_a_write_makes_every_later_read_ask_the_manager_again(installed: _Manager) -> None:
    """After a PATCH through the attempt's API, a read already made is made again and sees the change."""
    reads = AttemptReads(installed.pexip)
    uri = "/api/admin/configuration/v1/global/1/"
    before = (await reads.get(uri))["session_timeout_enabled"]
    await reads.patch(uri, {"session_timeout_enabled": not before})
    assert (await reads.get(uri))["session_timeout_enabled"] is (not before)
    assert installed.pexip.reads() == [uri, uri]


async def test_sync_status_and_logins_are_never_answered_from_memory(installed: _Manager) -> None:
    """A node syncs by itself and a login is a proof made now: each ask reaches the Manager."""
    reads = AttemptReads(installed.pexip)
    for _ in range(2):
        await reads.status("management_vm")
        await reads.verify_login(use_client_cert=False)
    assert [verb for verb, _ in installed.pexip.requests] == ["STATUS", "LOGIN", "STATUS", "LOGIN"]


class _TimeoutBehindTheMemo(Step):
    """A step whose apply changes the Manager without the attempt's API: only a fresh read sees it."""

    name: ClassVar[str] = "test_timeout_behind_the_memo"
    URI: ClassVar[str] = "/api/admin/configuration/v1/global/1/"

    async def observe(self, ctx: StepContext) -> dict[str, Any]:
        return await ctx.pexip.get(self.URI)

    def diff(self, ctx: StepContext, observed: dict[str, Any]) -> list[Change]:
        now = observed["session_timeout_enabled"]
        return [] if now is ctx.scratch["wanted"] else [Change("global.session_timeout_enabled", now, not now)]

    async def apply(self, ctx: StepContext, observed: Any, changes: list[Change]) -> None:
        await ctx.systems.pexip.patch(self.URI, {"session_timeout_enabled": ctx.scratch["wanted"]})


async def test_verify_reads_the_world_after_apply(installed: _Manager) -> None:
    """The verifying observe asks the Manager again, even when apply wrote past the attempt's memory."""
    ctx = installed.context()
    ctx.scratch["wanted"] = not (await installed.pexip.twin.get(_TimeoutBehindTheMemo.URI))["session_timeout_enabled"]
    outcome = await execute(_TimeoutBehindTheMemo(), ctx)
    assert outcome is not None and [c.field for c in outcome.changes] == ["global.session_timeout_enabled"]
    assert installed.pexip.reads() == [_TimeoutBehindTheMemo.URI] * 2


async def test_a_plan_made_again_with_the_same_context_reads_the_world_again(installed: _Manager) -> None:
    """A refresh retries a plan with one context: the second plan sees what changed in between."""
    ctx = installed.context()
    step = _TimeoutBehindTheMemo()
    ctx.scratch["wanted"] = not (await installed.pexip.twin.get(step.URI))["session_timeout_enabled"]
    assert len(await plan_step(step, ctx)) == 1
    await installed.pexip.twin.patch(step.URI, {"session_timeout_enabled": ctx.scratch["wanted"]})
    assert await plan_step(step, ctx) == []


async def test_install_certificate_asks_each_thing_once_before_it_writes(hardened: _Manager) -> None:
    """Observe, the certificate gate and apply share their reads (the certificate, the CA list, the CSR);
    the verifying observe after apply reads them all again."""
    for name in ("trusted_ca_chain", "create_csr"):
        assert await execute(STEPS[name], hardened.context()) is not None
    hardened.pexip.requests.clear()
    ctx = hardened.context()
    step = STEPS["install_certificate"]

    async def gate_open(changes: list[Change]) -> bool:  # as the engine's gates do: the CA answers by itself
        gate = step.gate(ctx, changes)
        if gate is not None:
            ctx.gate_payload = await step.try_open_gate(ctx, gate)
        return gate is None or ctx.gate_payload is not None

    outcome = await execute(step, ctx, before_apply=gate_open)
    assert outcome is not None and {c.field for c in outcome.changes} == {"tls_certificate", "node.tls_certificate"}
    verbs = [verb for verb, _ in hardened.pexip.requests]
    before_writes = hardened.pexip.reads()[: verbs.index("PATCH")]
    assert len(before_writes) == len(set(before_writes)), f"asked twice before any write: {before_writes}"
    last_write = len(verbs) - 1 - verbs[::-1].index("PATCH")
    verified = [what for verb, what in hardened.pexip.requests[last_write + 1 :] if verb == "GET"]
    assert {what.split("/")[0] for what in verified} >= {"ca_certificate", "tls_certificate", "management_vm"}


def test_steps_reach_the_manager_only_through_the_attempts_api() -> None:
    """A write past ``ctx.pexip`` would leave the attempt's reads stale: no step module uses ``systems.pexip``."""
    steps = Path(__file__).parents[2] / "orchestrator" / "steps"
    bypassing = [p.name for p in steps.glob("*.py") if p.name != "base.py" and "systems.pexip" in p.read_text()]
    assert bypassing == []


async def test_create_csr_asks_for_no_ca_list_and_its_verify_only_for_the_csr(hardened: _Manager) -> None:
    """Until its certificate is installed a node has only its self-signed one, so the CA certificates are not
    asked for; once the CSR exists, the verifying observe asks for that CSR and nothing else."""
    assert await execute(STEPS["trusted_ca_chain"], hardened.context()) is not None
    hardened.pexip.requests.clear()
    outcome = await execute(STEPS["create_csr"], hardened.context())
    assert outcome is not None and [c.field for c in outcome.changes] == ["certificate_signing_request"]
    verbs = [verb for verb, _ in hardened.pexip.requests]
    assert verbs.count("POST") == 1
    reads = hardened.pexip.reads()
    assert [r for r in reads if r.startswith("ca_certificate")] == []
    verified = [what for verb, what in hardened.pexip.requests[verbs.index("POST") + 1 :] if verb == "GET"]
    assert [what.split("/")[0] for what in verified] == ["certificate_signing_request"]
