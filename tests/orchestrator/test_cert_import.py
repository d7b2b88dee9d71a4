"""`orchestrator cert import` checks a certificate before anything reaches the node (issue #7, finding 10).

Each case is a wrong import an operator could make; it is refused, nothing is journaled, and the
node's CSR stays usable: the right certificate is accepted afterwards and the deployment finishes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from adapters.ca_manual import ManualCA
from adapters.sim._pki import issue_certificate, load_certs, load_csr, load_key, make_root, new_key, sign_csr
from adapters.sim.world import SimWorld
from config.errors import ConfigError
from config.load import simulated_deployment
from config.model import Deployment
from journal import Journal, kinds
from orchestrator import api
from orchestrator._cert_check import KEY_MISMATCH, certificate_problems
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems

MGR, CONF = "pexip-mgr", "pexip-conf-00001"


@dataclasses.dataclass
class Site:
    """A 2-node deployment with a manual CA, both nodes waiting for their certificates."""

    deployment: Deployment
    journal: Path
    world: Path
    ca_key: str
    ca_cert: str
    tmp: Path

    def csr(self, node: str) -> str:
        with Journal.open(self.journal) as j:
            event = j.last_event(node, kind=kinds.GATE_WAITING)
        assert event is not None
        return str(event.payload["csr"])

    def write(self, name: str, pem: str) -> Path:
        path = self.tmp / name
        path.write_text(pem)
        return path

    async def run(self) -> Any:
        world = SimWorld.open(self.world)
        systems = dataclasses.replace(open_systems(self.deployment, world), ca=ManualCA(self.deployment, self.tmp))
        try:
            with api.open_journal(self.journal) as journal:
                return await Engine(
                    self.deployment, journal, systems, clock=FakeClock(), hooks=world, auto_approve=True
                ).run()
        finally:
            await systems.aclose()
            await world.aclose()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    ca_key, ca_cert = make_root("Site Root CA")
    chain = tmp_path / "ca-chain.pem"
    chain.write_text(ca_cert)
    deployment = simulated_deployment(2, tmp_path / "world.d")
    deployment = dataclasses.replace(
        deployment, pki=dataclasses.replace(deployment.pki, mode="manual", ca_chain=str(chain))
    )
    s = Site(deployment, tmp_path / "journal.sqlite", tmp_path / "world.sqlite", ca_key, ca_cert, tmp_path)
    report = await s.run()
    assert report.exit_code == 3
    with Journal.open(s.journal) as j:
        assert {r.name: r.state for r in j.nodes()} == {MGR: "awaiting_certificate", CONF: "awaiting_certificate"}
    yield s


def _import(site: Site, node: str, pem: str) -> dict[str, Any]:
    with api.open_journal(site.journal) as journal:
        return api.cert_import(journal, node, site.write(f"{node}.pem", pem), by="carol", deployment=site.deployment)


def _csr_key_cert(
    site: Site,
    node: str,
    *,
    sans: list[str] | None = None,
    usages: tuple[Any, ...] = (EKU.SERVER_AUTH, EKU.CLIENT_AUTH),
    ca: bool = False,
    signer: tuple[str, str] | None = None,
) -> str:
    """A certificate for the node's CSR key, built as told (the wrong-import cases)."""
    csr = load_csr(site.csr(node))
    key_pem, cert_pem = signer or (site.ca_key, site.ca_cert)
    names = sans if sans is not None else [site.deployment.node(node).fqdn]
    cert = issue_certificate(
        csr.subject,
        csr.public_key(),
        load_key(key_pem, trusted=True),
        issuer=load_certs(cert_pem)[0],
        ca=ca,
        sans=[x509.DNSName(n) for n in names],
        usages=usages,
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM).decode()


def _wrong_imports(site: Site) -> list[tuple[str, str, str]]:
    other_key, other_ca = make_root("Someone Else's CA")
    fresh = new_key("RSA2048")
    own_key = issue_certificate(
        load_csr(site.csr(MGR)).subject,
        fresh.public_key(),
        load_key(site.ca_key, trusted=True),
        issuer=load_certs(site.ca_cert)[0],
        ca=False,
        sans=[x509.DNSName(site.deployment.management.fqdn)],
        usages=[EKU.SERVER_AUTH, EKU.CLIENT_AUTH],
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return [
        # (what the operator did, the certificate, what the refusal says)
        ("the other node's certificate", sign_csr(site.csr(CONF), site.ca_key, site.ca_cert), KEY_MISMATCH),
        ("the CA's own certificate", site.ca_cert, KEY_MISMATCH),
        ("a certificate for a key the CSR does not hold", own_key.public_bytes(Encoding.PEM).decode(), KEY_MISMATCH),
        (
            "signed by an untrusted CA",
            sign_csr(site.csr(MGR), other_key, other_ca),
            "not signed by a CA of pki.ca_chain",
        ),
        ("for another name", _csr_key_cert(site, MGR, sans=["intruder.example.com"]), "not issued for the node's FQDN"),
        ("server usage only", _csr_key_cert(site, MGR, usages=(EKU.SERVER_AUTH,)), "lacks clientAuth"),
        ("a CA certificate on the CSR's key", _csr_key_cert(site, MGR, ca=True), "it is a CA certificate"),
    ]


async def test_every_wrong_import_is_refused_and_nothing_is_consumed(site: Site) -> None:
    """Each wrong certificate is refused naming why, the journal is unchanged; the right one then finishes the node."""
    with Journal.open(site.journal) as j:
        before = j.statistics()["last_seq"]
    for what, pem, message in _wrong_imports(site):
        with pytest.raises(ConfigError, match=message):
            _import(site, MGR, pem)
        with Journal.open(site.journal) as j:
            assert j.statistics()["last_seq"] == before, what
    for node in (MGR, CONF):
        result = _import(site, node, sign_csr(site.csr(node), site.ca_key, site.ca_cert))
        assert result["by"] == "carol"
    with Journal.open(site.journal) as j:
        opened = [e for e in j.events(kinds=[kinds.GATE_OPENED]) if e.payload.get("gate") == "certificate"]
    assert [e.actor for e in opened] == ["carol", "carol"]
    report = await site.run()
    assert report.exit_code == 0, report.outcomes


async def test_a_node_without_a_pending_csr_takes_no_certificate(site: Site, tmp_path: Path) -> None:
    """A certificate for a node that waits on no CSR (a fresh journal) is refused."""
    pem = sign_csr(site.csr(MGR), site.ca_key, site.ca_cert)
    with api.open_journal(tmp_path / "fresh.sqlite") as journal:
        journal.ensure_nodes((n.name, n.role, "new") for n in site.deployment.nodes)
        with pytest.raises(ConfigError, match="no CSR is pending"):
            api.cert_import(journal, MGR, site.write("m.pem", pem), by="carol", deployment=site.deployment)
        assert not list(journal.events(kinds=[kinds.GATE_OPENED]))


async def test_a_certificate_not_valid_now_is_refused(site: Site) -> None:
    """A certificate checked at a time outside its validity is refused."""
    cert = load_certs(sign_csr(site.csr(MGR), site.ca_key, site.ca_cert))[0]
    later = datetime.now(UTC) + timedelta(days=400)
    problems = certificate_problems(
        cert, csr_pem=site.csr(MGR), chain=load_certs(site.ca_cert), fqdn=site.deployment.management.fqdn, now=later
    )
    assert len(problems) == 1 and "not valid now" in problems[0]


async def test_cert_import_without_who_or_configuration_is_bad_input(site: Site) -> None:
    """`--by` must name someone, and the deployment (its pki.ca_chain) must be known."""
    pem = site.write("m.pem", sign_csr(site.csr(MGR), site.ca_key, site.ca_cert))
    with api.open_journal(site.journal) as journal:
        with pytest.raises(ConfigError, match="--by"):
            api.cert_import(journal, MGR, pem, by=" ", deployment=site.deployment)
        with pytest.raises(ConfigError, match="pass -c FILE"):
            api.cert_import(journal, MGR, pem, by="carol")
