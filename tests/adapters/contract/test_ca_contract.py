"""The CertificateAuthority contract: a submitted CSR comes back signed for its key, under the chain."""

from __future__ import annotations

import pytest
from _contract import CaCase
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapters.base import CertificateAuthority
from adapters.sim import _pki as pki
from config.errors import Rejected


def _csr(name: str) -> tuple[str, bytes]:
    """A CSR for ``name`` and its public key (DER)."""
    key = pki.new_key("ECDSAP256")
    public = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return pki.make_csr(key, name, "O=Example,C=GB", [name], False), public


def _public_key(cert_pem: str) -> bytes:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_is_a_certificate_authority(ca_case: CaCase) -> None:
    """The implementation satisfies the CertificateAuthority protocol."""
    assert isinstance(ca_case.ca, CertificateAuthority)


async def test_nothing_to_collect_before_a_submission(ca_case: CaCase) -> None:
    """collect for a node that submitted nothing is None."""
    assert await ca_case.ca.collect("conf-1") is None


async def test_submit_then_collect_the_certificate_for_that_key(ca_case: CaCase) -> None:
    """Once the CA signed, collect returns a certificate for the CSR's key, the same each time."""
    csr, public = _csr("conf1.example.com")
    await ca_case.ca.submit("conf-1", csr)
    await ca_case.signs("conf-1")
    signed = await ca_case.ca.collect("conf-1")
    assert signed is not None and _public_key(signed) == public
    assert await ca_case.ca.collect("conf-1") == signed
    assert await ca_case.ca.collect("conf-2") is None


async def test_submitting_the_same_csr_again_is_harmless(ca_case: CaCase) -> None:
    """A replayed submission of the same CSR changes nothing: the same certificate comes back."""
    csr, _ = _csr("conf1.example.com")
    await ca_case.ca.submit("conf-1", csr)
    await ca_case.signs("conf-1")
    signed = await ca_case.ca.collect("conf-1")
    await ca_case.ca.submit("conf-1", csr)
    assert await ca_case.ca.collect("conf-1") == signed


async def test_a_new_csr_never_collects_the_old_certificate(ca_case: CaCase) -> None:
    """After a node submits a new CSR, collect returns nothing or a certificate for the new key, never the old one."""
    old, _ = _csr("conf1.example.com")
    await ca_case.ca.submit("conf-1", old)
    await ca_case.signs("conf-1")
    assert await ca_case.ca.collect("conf-1") is not None
    new, public = _csr("conf1.example.com")
    await ca_case.ca.submit("conf-1", new)
    collected = await ca_case.ca.collect("conf-1")
    assert collected is None or _public_key(collected) == public
    await ca_case.signs("conf-1")
    collected = await ca_case.ca.collect("conf-1")
    assert collected is not None and _public_key(collected) == public


async def test_the_chain_issues_the_certificates(ca_case: CaCase) -> None:
    """chain() is PEM certificates, root last, and its root issued what collect returns."""
    csr, _ = _csr("conf1.example.com")
    await ca_case.ca.submit("conf-1", csr)
    await ca_case.signs("conf-1")
    signed = await ca_case.ca.collect("conf-1")
    assert signed is not None
    chain = await ca_case.ca.chain()
    assert chain and all(block.lstrip().startswith("-----BEGIN CERTIFICATE-----") for block in chain)
    root = x509.load_pem_x509_certificate(chain[-1].encode())
    assert root.subject == root.issuer, "the last block is the self-signed root"
    leaf = x509.load_pem_x509_certificate(signed.encode())
    issuer = x509.load_pem_x509_certificate(chain[0].encode())
    leaf.verify_directly_issued_by(issuer)


async def test_garbage_is_refused(ca_case: CaCase) -> None:
    """Something that is not a CSR is Rejected at submission."""
    with pytest.raises(Rejected):
        await ca_case.ca.submit("conf-1", "not a csr")


async def test_aclose_is_idempotent(ca_case: CaCase) -> None:
    """aclose after use, and again, raises nothing (the fixture closes a third time)."""
    await ca_case.ca.collect("conf-1")
    await ca_case.ca.aclose()
    await ca_case.ca.aclose()


async def test_after_withdraw_the_old_answer_is_gone_and_the_same_key_is_signed_anew(ca_case: CaCase) -> None:
    """withdraw (before a renewal CSR for the same key): collect returns nothing until the CA signs again,
    then a new certificate (another serial) for that key; withdrawing twice, or with nothing submitted, is harmless."""
    await ca_case.ca.withdraw("conf-2")
    key = pki.new_key("ECDSAP256")
    csr = pki.make_csr(key, "conf1.example.com", "O=Example,C=GB", ["conf1.example.com"], False)
    await ca_case.ca.submit("conf-1", csr)
    await ca_case.signs("conf-1")
    old = await ca_case.ca.collect("conf-1")
    assert old is not None
    await ca_case.ca.withdraw("conf-1")
    await ca_case.ca.withdraw("conf-1")
    assert await ca_case.ca.collect("conf-1") is None
    renewal = pki.make_csr(key, "conf1.example.com", "O=Example,C=GB", ["conf1.example.com"], False)
    await ca_case.ca.submit("conf-1", renewal)
    await ca_case.signs("conf-1")
    new = await ca_case.ca.collect("conf-1")
    assert new is not None and _public_key(new) == _public_key(old)
    serial = x509.load_pem_x509_certificate(new.encode()).serial_number
    assert serial != x509.load_pem_x509_certificate(old.encode()).serial_number
