"""The simulated CA: a persistent test root that signs each submitted CSR once."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from _sim_factory import make_deployment
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters import CertificateAuthority
from adapters.sim import SimCA, SimWorld
from adapters.sim import _pki as pki
from adapters.sim import ca as sim_ca
from adapters.sim.world import CA
from config.errors import Rejected
from config.model import Deployment


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return make_deployment(1, tmp_path)


def _csr(name: str, sans: list[str]) -> str:
    return pki.make_csr(pki.new_key("ECDSAP256"), name, "O=Example,C=GB", sans, False)


def test_conforms_to_the_protocol(tmp_path: Path, deployment: Deployment) -> None:
    """SimCA is a CertificateAuthority."""
    w = SimWorld.open(tmp_path / "w.sqlite")
    try:
        assert isinstance(SimCA(w, deployment), CertificateAuthority)
    finally:
        w.close()


async def test_signs_once_with_sans_and_both_usages(tmp_path: Path, deployment: Deployment) -> None:
    """collect() returns a server+client certificate with the CSR's SANs, signed once, that openssl verifies."""
    w = SimWorld.open(tmp_path / "w.sqlite")
    ca = SimCA(w, deployment)
    assert await ca.collect("conf-1") is None  # nothing submitted
    csr = _csr("conf1.example.com", ["conf1.example.com", "sip.example.com"])
    await ca.submit("conf-1", csr)
    await ca.submit("conf-1", csr)  # the same CSR again changes nothing
    signed = await ca.collect("conf-1")
    assert signed is not None and await ca.collect("conf-1") == signed
    cert = x509.load_pem_x509_certificate(signed.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sans == ["conf1.example.com", "sip.example.com"]
    usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    [root] = await ca.chain()
    (tmp_path / "root.pem").write_text(root)
    (tmp_path / "leaf.pem").write_text(signed)
    checked = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "root.pem"), str(tmp_path / "leaf.pem")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    assert w.effects_summary() == {"conf-1": {"cert_sign": 1}}
    await w.aclose()
    # The root and the issued certificate survive a restart.
    w = SimWorld.open(tmp_path / "w.sqlite")
    try:
        ca = SimCA(w, deployment)
        assert await ca.chain() == [root]
        assert await ca.collect("conf-1") == signed
        assert w.effects_summary() == {"conf-1": {"cert_sign": 1}}
    finally:
        w.close()


async def test_new_csr_gets_a_new_certificate(tmp_path: Path, deployment: Deployment) -> None:
    """Submitting a different CSR for the node replaces the request and is signed anew."""
    w = SimWorld.open(tmp_path / "w.sqlite")
    try:
        ca = SimCA(w, deployment)
        await ca.submit("n", _csr("n.example.com", []))
        first = await ca.collect("n")
        await ca.submit("n", _csr("n.example.com", []))
        second = await ca.collect("n")
        assert first != second
        assert w.effects_summary() == {"n": {"cert_sign": 2}}
    finally:
        w.close()


async def test_collect_waits_for_the_latency(
    tmp_path: Path, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With latency, the CA returns nothing until the signing time it drew, and the certificate from then on."""
    # The CA's clock held still (a fake, as the engine's Clock is): with the real one, "nothing right after
    # submission" needed submit-then-collect within 0.1 s, which a loaded machine breaks.
    now = [1_000_000.0]
    monkeypatch.setattr(sim_ca, "time", SimpleNamespace(time=lambda: now[0]))
    w = SimWorld.open(tmp_path / "w.sqlite", latency=0.2, seed=1)
    try:
        ca = SimCA(w, deployment)
        await ca.submit("n", _csr("n.example.com", []))
        ready_at = w.get(CA, "csr/n")["ready_at"]  # type: ignore[index]
        assert now[0] + 0.1 <= ready_at <= now[0] + 0.3  # signing takes latency x uniform(0.5, 1.5)
        assert await ca.collect("n") is None
        now[0] = ready_at - 0.001
        assert await ca.collect("n") is None
        now[0] = ready_at
        assert await ca.collect("n") is not None
    finally:
        w.close()


async def test_garbage_is_refused(tmp_path: Path, deployment: Deployment) -> None:
    """Something that is not a CSR is Rejected."""
    w = SimWorld.open(tmp_path / "w.sqlite")
    try:
        with pytest.raises(Rejected, match="refuses the CSR"):
            await SimCA(w, deployment).submit("n", "not a csr")
    finally:
        w.close()


async def test_the_same_csr_polled_again_is_not_checked_again(
    tmp_path: Path, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gate polls submit() with the CSR already stored: its signature was checked when it was stored, once."""
    checked: list[str] = []
    load_csr = pki.load_csr

    def counting_load_csr(pem: str, *, trusted: bool = False) -> x509.CertificateSigningRequest:
        # The real load_csr, each call written down: the count is what is asserted.
        if not trusted:
            checked.append(pem)
        return load_csr(pem, trusted=trusted)

    monkeypatch.setattr(sim_ca.pki, "load_csr", counting_load_csr)
    w = SimWorld.open(tmp_path / "w.sqlite")
    try:
        ca = SimCA(w, deployment)
        first, second = _csr("n.example.com", []), _csr("n.example.com", [])
        for csr in (first, first, first, second, second):
            await ca.submit("n", csr)
        assert checked == [first, second]
    finally:
        w.close()


def test_a_csr_made_here_is_not_verified_again_and_any_other_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_csr() checks a CSR's signature unless it is the very text make_csr() made in this process (signed then,
    with its key); a CSR made elsewhere, even of the same subject, is checked."""
    key = pki.new_key("ECDSAP256")
    made = pki.make_csr(key, "conf1.example.com", "", [], False)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conf1.example.com")])
    elsewhere = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    checked: list[bytes] = []
    parse = x509.load_pem_x509_csr

    class Watched:
        """The real CSR, its signature check written down: the count is what is asserted."""

        def __init__(self, data: bytes) -> None:
            self._csr, self._data = parse(data), data

        @property
        def is_signature_valid(self) -> bool:
            checked.append(self._data)
            return self._csr.is_signature_valid

    monkeypatch.setattr(pki.x509, "load_pem_x509_csr", Watched)
    pki.load_csr(made)
    pki.load_csr(elsewhere)
    pki.load_csr(made)
    assert checked == [elsewhere.encode()]


def test_a_certificate_names_the_csrs_dns_names_then_its_addresses_and_nothing_else() -> None:
    """sign_csr copies the CSR's DNS names, then its IP addresses, and no other kind of name; without any, its CN."""
    key_pem, root_pem = pki.make_root("Test root", "ECDSAP256")
    key = pki.new_key("ECDSAP256")
    wanted = [
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
        x509.RFC822Name("admin@example.com"),
        x509.DNSName("conf1.example.com"),
        x509.UniformResourceIdentifier("https://conf1.example.com/"),
        x509.IPAddress(ipaddress.ip_address("2001:db8::7")),
        x509.DNSName("sip.example.com"),
    ]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conf1.example.com")])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert = x509.load_pem_x509_certificate(pki.sign_csr(_pem(csr), key_pem, root_pem).encode())
    sans = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    assert sans == [wanted[2], wanted[5], wanted[0], wanted[4]]
    bare = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    cert = x509.load_pem_x509_certificate(pki.sign_csr(_pem(bare), key_pem, root_pem).encode())
    assert list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == [
        x509.DNSName("conf1.example.com")
    ]


def _pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("192.0.2.7", x509.IPAddress),  # an IPv4 address
        ("2001:db8::7", x509.IPAddress),  # an IPv6 address
        ("::1", x509.IPAddress),  # IPv6, no digit before the colons
        ("conf1.example.com", x509.DNSName),  # a DNS name with digits
        ("192.0.2", x509.DNSName),  # digits and dots, but not an address
        ("192.0.2.256", x509.DNSName),  # an octet out of range
        ("12345", x509.DNSName),  # digits only
        ("host:8080", x509.DNSName),  # a colon, but not IPv6
    ],
)
def test_a_name_is_an_ip_address_only_where_it_parses_as_one(name: str, kind: type[x509.GeneralName]) -> None:
    """general_name: an address where the name is one (a node named by its address), else a DNS name."""
    assert type(pki.general_name(name)) is kind
