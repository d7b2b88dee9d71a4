"""The trusted CA chain is compared by SHA-256 fingerprint of the DER, never by PEM text (pexip-api.md 7.14)."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.sim import SimWorld
from config.load import simulated_deployment
from config.model import Deployment
from orchestrator import api
from orchestrator.clock import FakeClock
from orchestrator.steps import STEPS, StepContext, execute, plan_step
from orchestrator.wiring import open_systems


async def _manager_installed(tmp_path: Path) -> tuple[Deployment, SimWorld]:
    """A simulated Management Node through its installation wizard (its API answers), no CA certificate yet."""
    deployment = simulated_deployment(1, tmp_path / "w.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    with api.open_journal(tmp_path / "journal.sqlite") as journal:
        report = await api.drive(
            deployment, journal, world=world, hooks=world, until="installed", auto_approve=True, clock=FakeClock()
        )
    assert report.exit_code == 0
    return deployment, world


def _rewrapped(pem: str) -> str:
    """The same certificate as a Manager may store it: 76-column lines, CRLF line endings, blanks around."""
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 76] for i in range(0, len(body), 76)]
    return "\r\n  " + "\r\n".join(["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----"]) + "\r\n\r\n"


async def test_a_rewrapped_copy_on_the_manager_is_not_uploaded_again(tmp_path: Path) -> None:
    """The chain's root already on the Manager in other PEM text: nothing to do; absent: uploaded once."""
    deployment, world = await _manager_installed(tmp_path)
    try:
        systems = open_systems(deployment, world)
        ctx = StepContext(deployment, deployment.management, systems)
        step = STEPS["trusted_ca_chain"]
        (root,) = await systems.ca.chain()
        assert [c.field for c in await plan_step(step, ctx)] == ["ca_certificate"], "not uploaded yet"
        await systems.pexip.create("ca_certificate", {"certificate": _rewrapped(root)})
        stored = [o["certificate"] for o in await systems.pexip.list_objects("ca_certificate")]
        assert stored and all(text != root for text in stored), "the Manager holds other text than the chain's"
        outcome = await execute(step, ctx)
        assert outcome is not None and outcome.changes == ()
        assert len(await systems.pexip.list_objects("ca_certificate")) == len(stored), "uploaded again"
        await systems.aclose()
    finally:
        await world.aclose()


async def test_a_missing_chain_certificate_is_uploaded_once(tmp_path: Path) -> None:
    """With nothing on the Manager the chain is uploaded; run again, the step changes nothing."""
    deployment, world = await _manager_installed(tmp_path)
    try:
        systems = open_systems(deployment, world)
        ctx = StepContext(deployment, deployment.management, systems)
        step = STEPS["trusted_ca_chain"]
        before = len(await systems.pexip.list_objects("ca_certificate"))
        first = await execute(step, ctx)
        assert first is not None and [c.field for c in first.changes] == ["ca_certificate"]
        assert len(await systems.pexip.list_objects("ca_certificate")) == before + 1
        again = await execute(step, ctx)
        assert again is not None and again.changes == ()
        await systems.aclose()
    finally:
        await world.aclose()
