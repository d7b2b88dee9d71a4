"""The checks before a CA's certificate reaches a node, for the key types the real world uses: Pexip's CSR
generator makes RSA 2048 keys unless told otherwise, and many site CAs sign with RSA."""

from __future__ import annotations

import pytest
from cryptography import x509

from adapters.sim import _pki as pki
from orchestrator._cert_check import KEY_MISMATCH, certificate_problems, load_pem_certificates

FQDN = "conf1.example.com"


@pytest.mark.parametrize(
    ("node_key", "root_key"),
    [
        ("RSA2048", "RSA2048"),  # Pexip's default CSR key, an RSA site CA
        ("RSA2048", "ECDSAP256"),  # an RSA CSR signed by an EC CA
        ("ECDSAP256", "RSA2048"),  # an EC CSR signed by an RSA CA
        ("ECDSAP256", "ECDSAP256"),  # what the simulation uses
    ],
)
def test_the_csrs_certificate_passes_and_one_for_another_key_of_its_type_does_not(node_key: str, root_key: str) -> None:
    """A certificate the trusted CA signed for the CSR's key has no problem; the same for another key of the
    same type is refused as not the CSR's (the keys are compared, whatever their type)."""
    root_key_pem, root_pem = pki.make_root("Site CA", root_key)
    chain = load_pem_certificates(root_pem)
    key, other = pki.new_key(node_key), pki.new_key(node_key)
    csr = pki.make_csr(key, FQDN, "O=Example,C=GB", [], False)
    signed = load_pem_certificates(pki.sign_csr(csr, root_key_pem, root_pem))[0]
    assert certificate_problems(signed, csr_pem=csr, chain=chain, fqdn=FQDN) == []
    not_its_key = pki.make_csr(other, FQDN, "O=Example,C=GB", [], False)
    problems = certificate_problems(signed, csr_pem=not_its_key, chain=chain, fqdn=FQDN)
    assert len(problems) == 1 and problems[0].startswith(KEY_MISMATCH)


def test_a_pem_text_parsed_again_gives_the_same_certificates_and_a_list_of_its_own() -> None:
    """The parse kept per text answers as a fresh parse would, and a caller's list is its own to change."""
    _, root_pem = pki.make_root("Site CA", "ECDSAP256")
    first = load_pem_certificates(root_pem)
    first.append(first[0])
    again = load_pem_certificates(root_pem)
    assert again == x509.load_pem_x509_certificates(root_pem.encode()) and len(again) == 1
    with pytest.raises(ValueError):
        load_pem_certificates("no certificate here")
