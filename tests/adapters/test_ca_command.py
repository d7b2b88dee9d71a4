"""The command CA (`[pki] mode = "command"`): a real program signs, once; its failures are clear errors."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from _openssl_ca import openssl_ca
from _sim_factory import make_deployment
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.ca_command import CommandCA
from adapters.sim import _pki as pki
from config.errors import Rejected, Timeout
from config.model import Deployment

FQDN = "conf1.example.com"


def _csr(name: str = FQDN) -> str:
    return pki.make_csr(pki.new_key("ECDSAP256"), name, "O=Example,C=GB", [name], False)


def _deployment(tmp_path: Path, command: tuple[str, ...] | None = None, timeout: float = 60.0) -> Deployment:
    deployment = make_deployment(1, tmp_path)
    spec = openssl_ca(tmp_path, deployment.pki)
    spec = dataclasses.replace(spec, command=command or spec.command, command_timeout_s=timeout)
    return dataclasses.replace(deployment, pki=spec)


async def test_openssl_ca_signs_once_and_openssl_verifies_it(tmp_path: Path) -> None:
    """The certificate `openssl ca` returns verifies against the chain for both TLS purposes; a replay signs nothing."""
    ca = CommandCA(_deployment(tmp_path), tmp_path)
    csr = _csr()
    await ca.submit("conf-1", csr)
    await ca.submit("conf-1", csr)  # a resumed run hands in the same CSR again
    signed = await ca.collect("conf-1")
    assert signed is not None
    (tmp_path / "leaf.pem").write_text(signed)
    for purpose in ("sslserver", "sslclient"):
        checked = subprocess.run(
            ["openssl", "verify", "-purpose", purpose, "-CAfile", "pki/ca-chain.pem", "leaf.pem"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=signed, capture_output=True, text=True
    )
    assert f"DNS:{FQDN}" in text.stdout
    assert len((tmp_path / "ca" / "index.txt").read_text().splitlines()) == 1, "the CA signed the CSR once"


async def test_a_failing_program_is_rejected_with_its_stderr(tmp_path: Path) -> None:
    """Exit status non-zero: Rejected naming the program, the status and what it said; nothing collected."""
    script = "import sys; sys.stdin.read(); print('policy: CN not allowed', file=sys.stderr); sys.exit(3)"
    ca = CommandCA(_deployment(tmp_path, (sys.executable, "-c", script)), tmp_path)
    with pytest.raises(Rejected, match=r"refused the CSR of conf-1: exit status 3: policy: CN not allowed") as caught:
        await ca.submit("conf-1", _csr())
    assert not caught.value.retryable
    assert await ca.collect("conf-1") is None


async def test_a_program_that_prints_no_certificate_for_the_key_is_rejected(tmp_path: Path) -> None:
    """Exit 0 with no PEM, or with a certificate for another key, is refused and nothing is kept."""
    other = pki.sign_csr(_csr(), *pki.make_root("Other CA"))
    for output in ("signed!", other):
        script = f"import sys; sys.stdin.read(); sys.stdout.write({output!r})"
        ca = CommandCA(_deployment(tmp_path, (sys.executable, "-c", script)), tmp_path)
        with pytest.raises(Rejected, match="standard output"):
            await ca.submit("conf-1", _csr())
        assert await ca.collect("conf-1") is None


async def test_a_program_that_hangs_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    """No answer within pki.command_timeout_s: a retryable Timeout naming the setting."""
    ca = CommandCA(_deployment(tmp_path, (sys.executable, "-c", "import time; time.sleep(30)"), timeout=0.3), tmp_path)
    with pytest.raises(Timeout, match="pki.command_timeout_s") as caught:
        await ca.submit("conf-1", _csr())
    assert caught.value.retryable


async def test_the_program_is_told_the_node(tmp_path: Path) -> None:
    """ORCHESTRATOR_NODE names the node whose CSR is on stdin (a site script may file it by node)."""
    script = (
        "import os, sys; open('seen', 'w').write(os.environ['ORCHESTRATOR_NODE']); "
        "sys.stdout.write(open('pki/inbox/ready.pem').read())"
    )
    deployment = _deployment(tmp_path, (sys.executable, "-c", script))
    csr = _csr()
    (tmp_path / "pki" / "inbox").mkdir(parents=True)
    (tmp_path / "pki" / "inbox" / "ready.pem").write_text(pki.sign_csr(csr, *pki.make_root("Site CA")))
    await CommandCA(deployment, tmp_path).submit("conf-7", csr)
    assert (tmp_path / "seen").read_text() == "conf-7"


async def test_a_program_that_cannot_start_is_rejected(tmp_path: Path) -> None:
    """A program missing at run time (removed after validation) is a clear Rejected, not an OSError."""
    ca = CommandCA(_deployment(tmp_path, (str(tmp_path / "gone"),)), tmp_path)
    with pytest.raises(Rejected, match="cannot start"):
        await ca.submit("conf-1", _csr())


async def test_nodes_certified_at_once_get_one_signature_each(tmp_path: Path) -> None:
    """Concurrent submissions run `openssl ca` one at a time: distinct serials, every one in the CA's database."""
    ca = CommandCA(_deployment(tmp_path), tmp_path)
    nodes = [f"conf-{i}" for i in range(4)]
    await asyncio.gather(*(ca.submit(node, _csr(f"{node}.example.com")) for node in nodes))
    serials = {x509.load_pem_x509_certificate(str(await ca.collect(n)).encode()).serial_number for n in nodes}
    assert len(serials) == 4
    assert len((tmp_path / "ca" / "index.txt").read_text().splitlines()) == 4


async def test_a_chain_file_with_an_intermediate_is_split_root_last(tmp_path: Path) -> None:
    """pki.ca_chain listing the root before its intermediate comes back as two blocks, the intermediate first."""
    root_key_pem, root_pem = pki.make_root("Site Root CA")
    root_key, root = pki.load_key(root_key_pem), pki.load_certs(root_pem)[0]
    key = pki.new_key("ECDSAP256")
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Site Issuing CA")])
    intermediate = pki.issue_certificate(name, key.public_key(), root_key, issuer=root, ca=True)
    deployment = _deployment(tmp_path)
    (tmp_path / "pki" / "ca-chain.pem").write_text(root_pem + intermediate.public_bytes(Encoding.PEM).decode())
    chain = await CommandCA(deployment, tmp_path).chain()
    assert [x509.load_pem_x509_certificate(b.encode()).subject.rfc4514_string() for b in chain] == [
        "CN=Site Issuing CA",
        "CN=Site Root CA,O=Simulated",
    ]
