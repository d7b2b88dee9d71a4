"""`orchestrator cert renew NODE`: a renewal CSR from the installed certificate (same key), journaled, the
CA's answer through the same checks, the certificate replaced in place (pexip-api.md 2 #4, the guide's CSRs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from _openssl_ca import openssl_ca, openssl_sign
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapters.sim.world import SimWorld
from config.errors import Rejected
from config.load import simulated_deployment
from config.model import Deployment
from journal import Journal, kinds
from orchestrator import api
from orchestrator.clock import FakeClock
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems
from tests.orchestrator.conftest import run_engine

MGR = "pexip-mgr"


async def _manager_certificates(deployment: Deployment, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The Manager's CA-signed TLS certificates for its FQDN, and its management_vm object."""
    world = SimWorld.open(tmp / "world.sqlite")
    try:
        systems = open_systems(deployment, world)
        certs = await systems.pexip.list_objects("tls_certificate", subject_name=deployment.management.fqdn)
        (vm,) = await systems.pexip.list_objects("management_vm")
        await systems.aclose()
    finally:
        await world.aclose()
    return [c for c in certs if c["raw_issuer"] != c["raw_subject"]], vm


def _key_and_serial(pem: str) -> tuple[bytes, int]:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo), cert.serial_number


def _uri(value: Any) -> Any:
    return value.get("resource_uri") if isinstance(value, dict) else value


async def test_a_renewal_keeps_the_key_replaces_the_certificate_and_is_journaled(tmp_path: Path) -> None:
    """After a whole run, renew: a new certificate (new serial) for the same key, in place, still assigned."""
    deployment = simulated_deployment(2, tmp_path / "w.d")
    assert (await run_engine(deployment, tmp_path)).exit_code == 0
    (before,), _ = await _manager_certificates(deployment, tmp_path)
    report = await run_engine(deployment, tmp_path, nodes=[MGR], retry=[MGR], from_step="create_csr", renew=True)
    assert report.exit_code == 0, report.outcomes
    (after,), vm = await _manager_certificates(deployment, tmp_path)
    key_before, serial_before = _key_and_serial(before["certificate"])
    key_after, serial_after = _key_and_serial(after["certificate"])
    assert key_after == key_before, "a renewal CSR uses the same private key"
    assert serial_after != serial_before, "a new certificate was installed"
    assert after["resource_uri"] == before["resource_uri"] and _uri(vm["tls_certificate"]) == after["resource_uri"]
    with Journal.open(tmp_path / "journal.sqlite") as j:
        (rewound,) = list(j.events(node=MGR, kinds=[kinds.REWOUND]))
        created = [e for e in j.events(node=MGR, kinds=[kinds.STEP_COMMITTED]) if e.step == "create_csr"]
        record = j.node(MGR)
    assert rewound.payload == {"from_step": "create_csr", "renew": True}
    assert "tls_certificate" in created[-1].payload["changed"][0]["wanted"], "the CSR names the certificate renewed"
    assert record is not None and record.state == "ldap_authenticated"
    # The renewal is done: running again changes nothing.
    again = await run_engine(deployment, tmp_path, nodes=[MGR])
    assert again.exit_code == 0
    (still,), _ = await _manager_certificates(deployment, tmp_path)
    assert still["certificate"] == after["certificate"]


async def test_a_manual_ca_renewal_waits_for_a_new_answer_and_checks_it(tmp_path: Path) -> None:
    """With a manual CA the old certificate in the inbox is no answer: the node waits; openssl signs the
    renewal CSR in the outbox; cert import checks it against that CSR; resume installs it."""
    base = simulated_deployment(2, tmp_path / "w.d")
    spec = openssl_ca(tmp_path, base.pki)
    deployment = dataclasses.replace(base, pki=spec)  # a command CA for the first issuance, unattended
    assert (await run_engine(deployment, tmp_path)).exit_code == 0
    (before,), _ = await _manager_certificates(deployment, tmp_path)
    manual = dataclasses.replace(deployment, pki=dataclasses.replace(spec, mode="manual", command=()))
    report = await run_engine(manual, tmp_path, nodes=[MGR], retry=[MGR], from_step="create_csr", renew=True)
    assert report.exit_code == 3, report.outcomes  # waiting on the CA, not the old certificate again
    fqdn = deployment.management.fqdn
    assert (tmp_path / "pki" / "inbox" / f"{fqdn}.pem.superseded").is_file()
    csr = (tmp_path / "pki" / "outbox" / f"{fqdn}.csr").read_text()
    signed = tmp_path / "renewed.pem"
    signed.write_text(openssl_sign(tmp_path, csr))
    with api.open_journal(tmp_path / "journal.sqlite") as journal:
        api.cert_import(journal, MGR, signed, by="carol", deployment=manual)
    report = await run_engine(manual, tmp_path, nodes=[MGR])
    assert report.exit_code == 0, report.outcomes
    (after,), _ = await _manager_certificates(deployment, tmp_path)
    assert _key_and_serial(after["certificate"])[0] == _key_and_serial(before["certificate"])[0]
    assert _key_and_serial(after["certificate"])[1] == _key_and_serial(signed.read_text())[1]


class _FailOnce:
    """Fault hooks that fail ``step`` once (before its side effect), as a run stopped there would leave it."""

    def __init__(self, step: str) -> None:
        self.step, self.fired = step, False

    def before_step(self, node: str, step: str) -> None:
        if step == self.step and not self.fired:
            self.fired = True
            raise Rejected(f"injected: {step} stopped before its CSR", system="sim")

    def after_apply(self, node: str, step: str) -> None:
        return None


async def test_a_renewal_stopped_before_its_csr_still_renews_on_resume(tmp_path: Path) -> None:
    """The renewal is read back from the journal: create_csr failed after the rewind, a plain resume renews."""
    deployment = simulated_deployment(1, tmp_path / "w.d")
    assert (await run_engine(deployment, tmp_path)).exit_code == 0
    (before,), _ = await _manager_certificates(deployment, tmp_path)
    world = SimWorld.open(tmp_path / "world.sqlite")
    systems = open_systems(deployment, world)
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            engine = Engine(deployment, journal, systems, clock=FakeClock(), hooks=_FailOnce("create_csr"))
            stopped = await engine.run([MGR], retry=[MGR], from_step="create_csr", renew=True)
    finally:
        await systems.aclose()
        await world.aclose()
    assert stopped.exit_code != 0
    resumed = await run_engine(deployment, tmp_path, nodes=[MGR], retry=[MGR])  # `orchestrator resume pexip-mgr`
    assert resumed.exit_code == 0, resumed.outcomes
    (after,), _ = await _manager_certificates(deployment, tmp_path)
    assert _key_and_serial(after["certificate"])[0] == _key_and_serial(before["certificate"])[0]
    assert _key_and_serial(after["certificate"])[1] != _key_and_serial(before["certificate"])[1], "renewed"


def test_the_cli_renews_a_simulated_node_journaled_by_who(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`orchestrator cert renew NODE --by WHO` after `simulate`: exit 0, the rewind journaled with its actor;
    an unknown node is bad input (exit 2) naming NODE."""
    from click.testing import CliRunner

    from orchestrator.cli import cli

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["simulate", "--nodes", "2", "-q"]).exit_code == 0
    done = runner.invoke(cli, ["cert", "renew", MGR, "--by", "alice", "-q"])
    assert done.exit_code == 0, done.output
    with Journal.open(tmp_path / "simulation.journal.sqlite") as j:
        (rewound,) = list(j.events(node=MGR, kinds=[kinds.REWOUND]))
    assert (rewound.actor, rewound.payload) == ("alice", {"from_step": "create_csr", "renew": True})
    bad = runner.invoke(cli, ["cert", "renew", "pexip-nope", "-q"])
    assert bad.exit_code == 2 and "NODE" in bad.output
