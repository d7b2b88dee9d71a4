"""The orchestrator's client certificate is checked when the file is loaded (issue #9, item 6 in part).

Found wrong only at ``ldap_authenticated``, it would stop the run after the irreversible steps;
so the certificate in ``pexip_api.client_cert`` must name ``ldap.verify_user`` where the Manager
reads the identity (CN or userPrincipalName), chain to ``pki.ca_chain``, and allow client use.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from adapters.sim._pki import make_root
from config._ready import file_problems
from config.load import load_deployment
from tests.config.conftest import EXAMPLE, client_certificate, write_example_files


def _example(directory: Path) -> tuple[str, str]:
    """The example's files, with a CA of the test's own as pki.ca_chain: its (key, certificate)."""
    write_example_files(directory)
    key, ca = make_root("Example test CA")
    (directory / "certs" / "ca-chain.pem").write_text(ca)
    return key, ca


def _problems(directory: Path, pem: str | None, mode: str = "CN") -> list[str]:
    """The pexip_api.client_cert problems of the example (real Management API) with ``pem`` as the certificate."""
    if pem is not None:
        (directory / "certs" / "orchestrator-admin.pem").write_text(pem)
    config = directory / "deployment.toml"
    config.write_text(EXAMPLE.read_text().replace('client_certificate = "CN"', f'client_certificate = "{mode}"'))
    deployment = load_deployment(config, check_secrets=False)
    return [message for field, message in file_problems(deployment) if field == "pexip_api.client_cert"]


def test_the_example_files_client_certificate_passes(tmp_path: Path) -> None:
    """A certificate for ldap.verify_user in its CN, from the chain's CA, for client use: no problem."""
    write_example_files(tmp_path)
    assert _problems(tmp_path, None) == []


@pytest.mark.parametrize(
    ("make", "mode", "fragment"),
    [
        # (the certificate given, ldap.client_certificate, what the problem says)
        (lambda k, c: client_certificate(k, c, "someone-else"), "CN", "its subject CN is not 'orchestrator'"),
        (lambda k, c: client_certificate(k, c, "orchestrator"), "UPN", "userPrincipalName is not 'orchestrator'"),
        (
            lambda k, c: client_certificate(k, c, "orchestrator", usages=(EKU.SERVER_AUTH,)),
            "CN",
            "lacks clientAuth",
        ),
        (lambda k, c: client_certificate(k, c, "orchestrator", is_ca=True), "CN", "it is a CA certificate"),
        (lambda k, c: client_certificate(*make_root("Other CA"), "orchestrator"), "CN", "not signed by a CA of"),
    ],
)
def test_a_client_certificate_that_cannot_log_in_is_refused(tmp_path: Path, make, mode: str, fragment: str) -> None:
    """Each certificate that would fail the client-certificate login is named before anything is written."""
    problems = _problems(tmp_path, make(*_example(tmp_path)), mode)
    assert any(fragment in p for p in problems), problems


def test_a_upn_client_certificate_passes_in_upn_mode(tmp_path: Path) -> None:
    """ldap.client_certificate = UPN reads the identity from the userPrincipalName SAN (user or user@domain)."""
    pem = client_certificate(*_example(tmp_path), "Orchestrator Service", upn="orchestrator@example.com")
    assert _problems(tmp_path, pem, "UPN") == []
    assert any("subject CN is not" in p for p in _problems(tmp_path, pem, "CN"))
