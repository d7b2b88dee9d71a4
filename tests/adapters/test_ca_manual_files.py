"""The manual CA's folders: `<subject-name>.csr` out, `<subject-name>.pem` or `.crt` (PEM or DER) back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from _sim_factory import make_deployment
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.ca_manual import ManualCA
from adapters.sim import _pki as pki
from config.model import Deployment


def _manual(tmp_path: Path, subject: str = "fqdn") -> Deployment:
    deployment = make_deployment(2, tmp_path)
    spec = dataclasses.replace(
        deployment.pki, mode="manual", ca_chain="pki/ca-chain.pem", inbox="pki/inbox", subject=subject
    )
    return dataclasses.replace(deployment, pki=spec)


async def test_the_csr_is_named_by_the_subject_and_a_der_crt_comes_back_as_pem(tmp_path: Path) -> None:
    """The outbox holds `<fqdn>.csr` (not the node's name); a DER `<fqdn>.crt` in the inbox is collected as PEM."""
    deployment = _manual(tmp_path)
    node = deployment.conferencing[0]
    ca = ManualCA(deployment, tmp_path)
    csr = pki.make_csr(pki.new_key("ECDSAP256"), node.fqdn, "", [node.fqdn], False)
    await ca.submit(node.name, csr)
    assert sorted(p.name for p in (tmp_path / "pki" / "outbox").iterdir()) == [f"{node.fqdn}.csr"]
    assert await ca.collect(node.name) is None
    signed = pki.sign_csr(csr, *pki.make_root("Site CA"))
    der = x509.load_pem_x509_certificate(signed.encode()).public_bytes(Encoding.DER)
    (tmp_path / "pki" / "inbox").mkdir(parents=True)
    (tmp_path / "pki" / "inbox" / f"{node.fqdn}.crt").write_bytes(der)
    collected = await ca.collect(node.name)
    assert collected is not None
    assert x509.load_pem_x509_certificate(collected.encode()).public_bytes(Encoding.DER) == der
    assert await ca.collect(deployment.management.name) is None, "another node's subject is another file"


async def test_without_dns_the_files_are_named_by_the_address(tmp_path: Path) -> None:
    """pki.subject = "address": `<ip>.csr` out, `<ip>.pem` back."""
    deployment = _manual(tmp_path, subject="address")
    node = deployment.management
    ca = ManualCA(deployment, tmp_path)
    csr = pki.make_csr(pki.new_key("ECDSAP256"), node.address, "", [node.address], False)
    await ca.submit(node.name, csr)
    assert (tmp_path / "pki" / "outbox" / f"{node.address}.csr").read_text() == csr
    signed = pki.sign_csr(csr, *pki.make_root("Site CA"))
    (tmp_path / "pki" / "inbox").mkdir(parents=True)
    (tmp_path / "pki" / "inbox" / f"{node.address}.pem").write_text(signed)
    assert await ca.collect(node.name) == signed
