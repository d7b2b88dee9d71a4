"""The simulated CA's root key: ECDSA P-256 when the CA makes it, an older world's RSA root kept and used."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _sim_factory import make_deployment
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapters.sim import SimCA, SimWorld
from adapters.sim import _pki as pki
from adapters.sim.world import CA
from config.errors import Rejected


def _openssl_verifies(tmp_path: Path, root: str, leaf: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "root.pem").write_text(root)
    (tmp_path / "leaf.pem").write_text(leaf)
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "root.pem"), str(tmp_path / "leaf.pem")],
        capture_output=True,
        text=True,
    )


async def _signed_by_the_root(w: SimWorld, tmp_path: Path, key_type: str) -> str:
    """A CSR of ``key_type`` submitted to and signed by the world's CA, checked by ``openssl verify``
    against the CA's one root, which is returned."""
    ca = SimCA(w, make_deployment(1, tmp_path))
    await ca.submit("conf-1", pki.make_csr(pki.new_key(key_type), "conf1.example.com", "", [], False))
    signed = await ca.collect("conf-1")
    [root] = await ca.chain()
    assert signed is not None
    checked = _openssl_verifies(tmp_path, root, signed)
    assert checked.returncode == 0, checked.stderr
    return root


async def test_a_new_root_is_ecdsa_p256_and_signs_what_openssl_verifies(tmp_path: Path) -> None:
    w = SimWorld.open(tmp_path / "w.sqlite")
    try:
        root = await _signed_by_the_root(w, tmp_path, "RSA2048")
        key = x509.load_pem_x509_certificate(root.encode()).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    finally:
        w.close()


async def test_an_rsa_root_kept_in_an_older_world_still_signs(tmp_path: Path) -> None:
    key_pem, cert_pem = pki.make_root("older simulated root CA")  # the default key type: RSA 2048
    w = SimWorld.open(tmp_path / "w.sqlite")
    try:
        await w.apply([(CA, "root", {"key_pem": key_pem, "cert_pem": cert_pem})])
        assert await _signed_by_the_root(w, tmp_path, "ECDSAP256") == cert_pem
        assert isinstance(x509.load_pem_x509_certificate(cert_pem.encode()).public_key(), rsa.RSAPublicKey)
    finally:
        w.close()


async def test_a_csr_whose_signature_fails_is_refused_at_submit_and_never_signed(tmp_path: Path) -> None:
    """collect() signs without checking the signature again: submit() is the one check, so it must hold."""
    csr = x509.load_pem_x509_csr(pki.make_csr(pki.new_key("ECDSAP256"), "conf1.example.com", "", [], False).encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature value: still a CSR, no longer signed by its key
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    w = SimWorld.open(tmp_path / "w.sqlite")
    try:
        ca = SimCA(w, make_deployment(1, tmp_path))
        with pytest.raises(Rejected, match="signature does not verify"):
            await ca.submit("conf-1", forged)
        assert await ca.collect("conf-1") is None
        assert w.effects_summary() == {}
    finally:
        w.close()
