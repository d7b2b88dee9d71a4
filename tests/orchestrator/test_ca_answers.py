"""The CA's answer, however it comes (a command CA, a file in the inbox), is checked before it reaches the node.

A deployment whose CA is a real `openssl ca` (`[pki] mode = "command"`) runs to the end with no
one in between; the CSRs the simulated Manager made are what the guide asks for, as `openssl req`
reads them. A wrong certificate a CA hands back (another key, expired, another host, an untrusted
CA, no client usage) is refused naming the problem, and nothing changes on the node.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _openssl_ca import openssl_ca, openssl_sign

from adapters.sim._pexip_fields import Field
from adapters.sim._pexip_schema import RESOURCES
from adapters.sim.world import SimWorld
from config.errors import ConfigError
from config.load import simulated_deployment
from config.model import Deployment
from journal import Journal, kinds
from orchestrator import api
from orchestrator.wiring import open_systems
from tests.orchestrator.conftest import run_engine

MGR, CONF = "pexip-mgr", "pexip-conf-00001"


async def _run(deployment: Deployment, tmp: Path, retry: tuple[str, ...] = ()) -> Any:
    return await run_engine(deployment, tmp, retry=retry)


def _deployment(
    tmp: Path, mode: str = "command", dn: str = "O=Example Ltd,OU=IT,L=London,ST=England,C=GB"
) -> Deployment:
    deployment = simulated_deployment(2, tmp / "world.d")
    spec = dataclasses.replace(openssl_ca(tmp, deployment.pki), dn=dn, key_type="ECDSAP256", ms_template=True)
    if mode == "manual":
        spec = dataclasses.replace(spec, mode="manual", command=())
    return dataclasses.replace(deployment, pki=spec)


def _openssl(*args: str, data: str) -> str:
    done = subprocess.run(["openssl", *args], input=data, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


async def test_a_command_ca_certifies_every_node_unattended(tmp_path: Path) -> None:
    """openssl ca signs each Manager-made CSR, the run ends with exit 0, openssl verifies each installed certificate."""
    deployment = _deployment(tmp_path)
    report = await _run(deployment, tmp_path)
    assert report.exit_code == 0, report.outcomes
    chain = tmp_path / "pki" / "ca-chain.pem"
    for node in deployment.nodes:
        csr = (tmp_path / "pki" / "outbox" / f"{node.fqdn}.csr").read_text()  # <subject-name>.csr
        text = _openssl("req", "-noout", "-text", "-verify", data=csr)
        assert "self-signature verify OK" in text
        # The guide's CSR: CN = the node's FQDN, among the SANs; the additional subject fields; both usages;
        # the key type and the Microsoft template asked for.
        assert f"CN = {node.fqdn}" in text and f"DNS:{node.fqdn}" in text
        assert "O = Example Ltd, OU = IT, L = London, ST = England, C = GB" in text
        assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
        assert "ASN1 OID: prime256v1" in text  # pki.key_type = ECDSAP256
        assert "1.3.6.1.4.1.311.20.2" in text and "W.e.b.S.e.r.v.e.r" in text  # pki.ms_template: 'WebServer'
        cert = await _installed(deployment, tmp_path, node.fqdn)
        for purpose in ("sslserver", "sslclient"):
            _openssl("verify", "-purpose", purpose, "-CAfile", str(chain), data=cert)
    assert len((tmp_path / "ca" / "index.txt").read_text().splitlines()) == 2, "one signature per node"
    again = await _run(deployment, tmp_path)
    assert again.exit_code == 0
    assert len((tmp_path / "ca" / "index.txt").read_text().splitlines()) == 2, "a second run signs nothing"


async def _on_manager(deployment: Deployment, tmp: Path, resource: str, fqdn: str) -> list[dict[str, Any]]:
    """The simulated Manager's ``resource`` objects for ``fqdn``; TLS certificates: the CA-signed ones only."""
    world = SimWorld.open(tmp / "world.sqlite")
    try:
        systems = open_systems(deployment, world)
        found = await systems.pexip.list_objects(resource, subject_name=fqdn)
        await systems.aclose()
    finally:
        await world.aclose()
    return [o for o in found if resource != "tls_certificate" or o["raw_issuer"] != o["raw_subject"]]


async def _installed(deployment: Deployment, tmp: Path, fqdn: str) -> str:
    """The CA-signed certificate the simulated Manager holds for ``fqdn``."""
    (signed,) = await _on_manager(deployment, tmp, "tls_certificate", fqdn)
    return str(signed["certificate"])


def _csr_of(tmp: Path, node: str) -> str:
    """The CSR of the node named ``node`` in the outbox, ``<subject-name>.csr`` (the FQDN by default)."""
    return (tmp / "pki" / "outbox" / f"{_FQDN[node]}.csr").read_text()


_FQDN = {MGR: "pexmgr.sim.example.com", CONF: "conf00001.sim.example.com"}


def _wrong_answers(tmp: Path) -> list[tuple[str, str, str]]:
    """(the CA's mistake, its certificate for the Manager, what the refusal says); all made by openssl."""
    csr = _csr_of(tmp, MGR)
    other = tmp / "other"
    other.mkdir()
    openssl_ca(other, _deployment(tmp).pki)
    _, foreign_csr = _openssl_key_csr(tmp)
    return [
        ("signed for another key", openssl_sign(tmp, foreign_csr), "do not appear to be part of the same key pair"),
        (
            "expired",
            openssl_sign(tmp, csr, "-startdate", "20200101000000Z", "-enddate", "20200201000000Z"),
            "not valid now",
        ),
        ("for another host", openssl_sign(tmp, csr, "-extensions", "other_host"), "not issued for the node's FQDN"),
        ("from an untrusted CA", openssl_sign(other, csr), "not signed by a CA of pki.ca_chain"),
        ("without client usage", openssl_sign(tmp, csr, "-extensions", "server_only"), "lacks clientAuth"),
    ]


def _openssl_key_csr(tmp: Path) -> tuple[Path, str]:
    key = tmp / "foreign.key"
    csr = subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        + ["-keyout", str(key), "-subj", "/CN=pexip-mgr.example.com"],
        capture_output=True,
        text=True,
        check=True,
    )
    return key, csr.stdout


@pytest.fixture
async def waiting(tmp_path: Path) -> Deployment:
    """A manual-CA deployment whose nodes wait on their certificates, CSRs in the outbox."""
    deployment = _deployment(tmp_path, mode="manual")
    assert (await _run(deployment, tmp_path)).exit_code == 3
    return deployment


async def test_every_wrong_answer_in_the_inbox_is_refused_naming_why(waiting: Deployment, tmp_path: Path) -> None:
    """Each wrong certificate dropped in the inbox fails the node with the reason; nothing reaches the Manager."""
    inbox = tmp_path / "pki" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for what, pem, message in _wrong_answers(tmp_path):
        (inbox / f"{_FQDN[MGR]}.pem").write_text(pem)
        report = await _run(waiting, tmp_path, retry=(MGR,))
        assert report.exit_code != 0, what
        with Journal.open(tmp_path / "journal.sqlite") as j:
            record = next(r for r in j.nodes() if r.name == MGR)
            opened = [
                e for e in j.events(node=MGR, kinds=[kinds.GATE_OPENED]) if e.payload.get("gate") == "certificate"
            ]
        assert message in (record.last_error or ""), (what, record.last_error)
        assert opened == [], f"{what}: the gate opened"
        fqdn = waiting.management.fqdn
        assert await _on_manager(waiting, tmp_path, "tls_certificate", fqdn) == [], f"{what}: installed"
        csrs = await _on_manager(waiting, tmp_path, "certificate_signing_request", fqdn)
        assert len(csrs) == 1, f"{what}: the CSR was consumed"
    (inbox / f"{_FQDN[MGR]}.pem").write_text(openssl_sign(tmp_path, _csr_of(tmp_path, MGR)))
    (inbox / f"{_FQDN[CONF]}.pem").write_text(openssl_sign(tmp_path, _csr_of(tmp_path, CONF)))
    report = await _run(waiting, tmp_path, retry=(MGR,))  # `orchestrator resume pexip-mgr`
    assert report.exit_code == 0, report.outcomes


async def test_a_key_type_the_manager_does_not_offer_is_refused_before_any_csr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pki.key_type is checked against the Manager's own schema: a version without ECDSA P-256 stops create_csr."""
    # An older Manager version: its CSR generator's valid_choices lack ECDSAP256 (the twin's schema, narrowed).
    spec = RESOURCES["certificate_signing_request"]
    older = dict(spec.fields, private_key_type=Field("enum", "RSA2048", choices=("RSA2048", "RSA4096", "UPLOAD")))
    monkeypatch.setitem(RESOURCES, "certificate_signing_request", dataclasses.replace(spec, fields=older))
    deployment = _deployment(tmp_path)
    report = await _run(deployment, tmp_path)
    assert report.exit_code == 1
    with Journal.open(tmp_path / "journal.sqlite") as j:
        record = next(r for r in j.nodes() if r.name == MGR)
    assert record.step == "create_csr" and record.state == "failed"
    assert "pki.key_type: this Management Node's key type not offered by the CSR generator (got 'ECDSAP256')" in (
        record.last_error or ""
    )
    assert "use one of: RSA2048, RSA4096" in (record.last_error or "")
    assert await _on_manager(deployment, tmp_path, "certificate_signing_request", deployment.management.fqdn) == []


async def test_where_no_dns_is_used_the_certificate_names_the_address(tmp_path: Path) -> None:
    """pki.subject = "address": the CSRs' CN and SAN are the node's IP; openssl verifies the certificate for it."""
    deployment = _deployment(tmp_path)
    deployment = dataclasses.replace(deployment, pki=dataclasses.replace(deployment.pki, subject="address"))
    report = await _run(deployment, tmp_path)
    assert report.exit_code == 0, report.outcomes
    chain = str(tmp_path / "pki" / "ca-chain.pem")
    for node in deployment.nodes:
        csr = (tmp_path / "pki" / "outbox" / f"{node.address}.csr").read_text()  # named by the subject: the IP
        text = _openssl("req", "-noout", "-text", "-verify", data=csr)
        assert f"CN = {node.address}" in text and f"IP Address:{node.address}" in text
        assert f"DNS:{node.fqdn}" in text  # what the SIP TLS FQDN is set to must be an entry of the certificate
        cert = await _installed(deployment, tmp_path, node.address)
        _openssl("verify", "-purpose", "sslserver", "-verify_ip", node.address, "-CAfile", chain, data=cert)


async def test_a_certificate_for_the_name_is_refused_where_the_address_is_the_subject(
    waiting: Deployment, tmp_path: Path
) -> None:
    """With pki.subject = "address", a certificate valid only for the node's FQDN is not for the node."""
    deployment = dataclasses.replace(waiting, pki=dataclasses.replace(waiting.pki, subject="address"))
    pem = openssl_sign(tmp_path, _csr_of(tmp_path, MGR))  # the CSR of the FQDN: DNS names only
    path = tmp_path / "m.pem"
    path.write_text(pem)
    with api.open_journal(tmp_path / "journal.sqlite") as journal:
        with pytest.raises(ConfigError, match=f"not issued for the node's address {deployment.management.address}"):
            api.cert_import(journal, MGR, path, by="carol", deployment=deployment)


async def test_a_certificate_expiring_within_min_valid_days_is_refused(waiting: Deployment, tmp_path: Path) -> None:
    """pki.min_valid_days = 60 refuses the CA's 30-day certificate; with 14 it is taken."""
    path = tmp_path / "m.pem"
    path.write_text(openssl_sign(tmp_path, _csr_of(tmp_path, MGR)))  # the CA signs for 30 days
    for days, refused in ((60, True), (14, False)):
        deployment = dataclasses.replace(waiting, pki=dataclasses.replace(waiting.pki, min_valid_days=days))
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            if refused:
                with pytest.raises(ConfigError, match=r"sooner than pki.min_valid_days \(60 days from now\)"):
                    api.cert_import(journal, MGR, path, by="carol", deployment=deployment)
            else:
                assert api.cert_import(journal, MGR, path, by="carol", deployment=deployment)["by"] == "carol"
