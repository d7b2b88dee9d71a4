"""The lab's test PKI and the one certificate builder it shares with the simulated PKI, checked by openssl."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.sim._pki import issue_certificate, make_csr, make_root, new_key, sign_csr
from orchestrator.lab import make_test_pki, thumbprint_of


def _openssl_verify(ca_file: Path, cert_file: Path, *purpose: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", *purpose, "-CAfile", str(ca_file), str(cert_file)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def _write(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


def test_the_lab_server_certificate_verifies_against_the_lab_ca(pki_dir: Path) -> None:
    """openssl verifies vcsim's certificate against the lab CA, as a TLS server certificate."""
    pki = make_test_pki(pki_dir)
    checked = _openssl_verify(pki.ca_file, pki.cert_file, "-purpose", "sslserver")
    assert checked.returncode == 0 and checked.stdout.strip().endswith(": OK"), checked.stderr


def test_the_lab_certificates_carry_what_vcsim_and_openssl_3_need(pki_dir: Path) -> None:
    """RSA 2048 keys, a CA for end entities only, a server certificate for localhost and 127.0.0.1."""
    pki = make_test_pki(pki_dir)
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    cert = x509.load_pem_x509_certificate(pki.cert_file.read_bytes())
    for c in (ca, cert):
        key = c.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    ca_constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ca_constraints.critical and ca_constraints.value.ca and ca_constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ca.subject == ca.issuer == cert.issuer == _name("Pexip Orchestrator Lab CA")
    assert cert.subject == _name("localhost")
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert stat.S_IMODE(pki.key_file.stat().st_mode) == 0o600


def test_the_lab_pki_is_made_once(pki_dir: Path) -> None:
    """A second make_test_pki keeps the certificates it finds (the thumbprint a config pins stays valid)."""
    first = make_test_pki(pki_dir)
    before = thumbprint_of(first.cert_file)
    assert make_test_pki(pki_dir) == first and thumbprint_of(first.cert_file) == before
    assert before.startswith("sha256:") and len(before.split(":")) == 33


def test_the_builder_issues_an_ecdsa_chain_openssl_verifies(tmp_path: Path) -> None:
    """issue_certificate makes a P-256 CA and a server+client leaf under it that openssl verifies."""
    ca_key, key = new_key("ECDSAP256"), new_key("ECDSAP256")
    ca = issue_certificate(_name("Test CA"), ca_key.public_key(), ca_key, ca=True, days=30)
    leaf = issue_certificate(
        _name("node.example.com"),
        key.public_key(),
        ca_key,
        issuer=ca,
        ca=False,
        days=30,
        sans=[x509.DNSName("node.example.com")],
        usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    ca_file, leaf_file = _write(tmp_path / "ca.pem", ca), _write(tmp_path / "leaf.pem", leaf)
    for purpose in ("sslserver", "sslclient"):
        checked = _openssl_verify(ca_file, leaf_file, "-purpose", purpose)
        assert checked.returncode == 0, checked.stderr
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def test_a_leaf_is_not_a_ca(tmp_path: Path) -> None:
    """openssl refuses a chain through a certificate the builder issued as an end entity (ca=False)."""
    root_key, middle_key, key = new_key("RSA2048"), new_key("ECDSAP256"), new_key("ECDSAP256")
    root = issue_certificate(_name("Root"), root_key.public_key(), root_key, ca=True)
    middle = issue_certificate(_name("Not a CA"), middle_key.public_key(), root_key, issuer=root, ca=False)
    leaf = issue_certificate(_name("leaf"), key.public_key(), middle_key, issuer=middle, ca=False)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(root.public_bytes(Encoding.PEM) + middle.public_bytes(Encoding.PEM))
    checked = _openssl_verify(chain, _write(tmp_path / "leaf.pem", leaf))
    assert checked.returncode != 0 and "invalid CA certificate" in checked.stdout + checked.stderr


def test_a_bare_self_signed_certificate_has_no_ca_extensions() -> None:
    """ca=None: only the names asked for, no basic constraints or key ids (a node's temporary certificate)."""
    key = new_key("ECDSAP256")
    cert = issue_certificate(_name("fresh-node"), key.public_key(), key, sans=[x509.DNSName("fresh-node")])
    assert [e.oid for e in cert.extensions] == [x509.SubjectAlternativeName.oid]
    assert cert.issuer == cert.subject


def test_the_simulated_ca_signs_through_the_same_builder(tmp_path: Path) -> None:
    """The simulated CA's root and the leaf it signs for an ECDSA CSR verify with openssl."""
    root_key, root_pem = make_root("Simulated Test Root")
    key = new_key("ECDSAP256")
    leaf_pem = sign_csr(
        make_csr(key, "conf01.example.com", "O=Example,C=GB", ["conf01.example.com"], False), root_key, root_pem
    )
    (tmp_path / "root.pem").write_text(root_pem)
    (tmp_path / "leaf.pem").write_text(leaf_pem)
    checked = _openssl_verify(tmp_path / "root.pem", tmp_path / "leaf.pem", "-purpose", "sslserver")
    assert checked.returncode == 0, checked.stderr
    leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
