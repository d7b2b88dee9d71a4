"""The simulated Management API's certificates: CSRs it makes, signed certificates it completes, uploads it checks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from adapters import Systems
from adapters.sim import SimWorld
from adapters.sim import _pki as pki
from config.errors import Rejected
from config.model import Deployment


async def test_csr_is_real_and_verifies_with_openssl(systems: Systems, deployment: Deployment, tmp_path: Path) -> None:
    """A CSR POST makes a real CSR (CN, SANs, key type) that openssl verifies."""
    conf = deployment.conferencing[0]
    created = await systems.pexip.create(
        "certificate_signing_request",
        {
            "subject_name": conf.fqdn,
            "private_key_type": "ECDSAP256",
            "dn": "O=Example,C=GB",
            "additional_subject_alt_names": "pool.example.com, other.example.com",
        },
    )
    shown = await systems.pexip.get(created.uri)
    assert "private_key" not in shown
    csr = pki.load_csr(shown["csr"])
    assert pki.csr_names(csr) == (conf.fqdn, [conf.fqdn, "pool.example.com", "other.example.com"])
    (tmp_path / "req.csr").write_text(shown["csr"])
    checked = subprocess.run(
        ["openssl", "req", "-verify", "-noout", "-in", str(tmp_path / "req.csr")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert systems.pexip._world.effects_summary()[conf.name]["csr_create"] == 1  # noqa: SLF001


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"private_key_type": "UPLOAD"}, "private_key"),  # UPLOAD needs a key
        ({"private_key_type": "ECDSAP256", "private_key": "x"}, "private_key"),  # a key only with UPLOAD
        ({"private_key_type": "ECDSAP256", "dn": "X=1"}, "dn"),  # unknown subject field
    ],
)
async def test_csr_refusals(systems: Systems, fields: dict, field: str) -> None:
    """Inconsistent CSR requests are Rejected naming the field."""
    with pytest.raises(Rejected, match=f'"{field}"'):
        await systems.pexip.create("certificate_signing_request", {"subject_name": "n.example.com", **fields})


async def test_csr_completion_makes_a_tls_certificate(
    systems: Systems, world: SimWorld, deployment: Deployment
) -> None:
    """PATCHing the signed certificate on its CSR creates the tls_certificate and deletes the CSR."""
    api, conf = systems.pexip, deployment.conferencing[0]
    csr = await api.create("certificate_signing_request", {"subject_name": conf.fqdn, "private_key_type": "ECDSAP256"})
    await systems.ca.submit(conf.name, (await api.get(csr.uri))["csr"])
    signed = await systems.ca.collect(conf.name)
    assert signed is not None
    await api.patch(csr.uri, {"certificate": signed})
    [cert] = await api.list_objects("tls_certificate", subject_name=conf.fqdn)
    assert cert["nodes"] == [] and "CN=simulation simulated root CA" in cert["issuer_name"]
    assert cert["serial_no"] and cert["server_auth_usage"] and cert["client_auth_usage"]
    assert "private_key" not in cert
    with pytest.raises(Rejected, match="404"):
        await api.get(csr.uri)
    assert world.effects_summary()[conf.name] == {"csr_create": 1, "cert_sign": 1, "cert_complete": 1}


async def test_csr_completion_refuses_another_key(systems: Systems, deployment: Deployment) -> None:
    """A certificate for another CSR's key is refused with the guide's message; the CSR stays."""
    api, (one, two) = systems.pexip, deployment.conferencing
    first = await api.create("certificate_signing_request", {"subject_name": one.fqdn, "private_key_type": "ECDSAP256"})
    second = await api.create(
        "certificate_signing_request", {"subject_name": two.fqdn, "private_key_type": "ECDSAP256"}
    )
    await systems.ca.submit(two.name, (await api.get(second.uri))["csr"])
    wrong = await systems.ca.collect(two.name)
    with pytest.raises(Rejected, match="Certificate and private key do not appear to be part of the same key pair"):
        await api.patch(first.uri, {"certificate": wrong})
    with pytest.raises(Rejected, match="cannot be modified"):
        await api.patch(first.uri, {"subject_name": "other"})
    assert (await api.get(first.uri))["subject_name"] == one.fqdn


async def test_tls_certificate_upload_checks_the_key_pair(systems: Systems) -> None:
    """A TLS certificate upload needs the private key that pairs with it."""
    key, other = pki.new_key("ECDSAP256"), pki.new_key("ECDSAP256")
    cert = pki.self_signed("upload.example.com", key)
    with pytest.raises(Rejected, match="same key pair"):
        await systems.pexip.create("tls_certificate", {"certificate": cert, "private_key": pki.key_pem(other)})
    created = await systems.pexip.create("tls_certificate", {"certificate": cert, "private_key": pki.key_pem(key)})
    shown = await systems.pexip.get(created.uri)
    assert shown["subject_name"] == "upload.example.com" and "private_key" not in shown


async def test_ca_certificate_takes_one_pem(systems: Systems) -> None:
    """A trusted CA upload holds one certificate; a bundle is refused."""
    [root] = await systems.ca.chain()
    created = await systems.pexip.create("ca_certificate", {"certificate": root})
    assert (await systems.pexip.get(created.uri))["subject_name"].endswith("simulated root CA")
    with pytest.raises(Rejected, match='"certificate"'):
        await systems.pexip.create("ca_certificate", {"certificate": root + root})
