"""The whole lab with LDAP real: `lab up` (vcsim and slapd), `orchestrator run` of the lab deployment to
``ldap_authenticated`` through the lab's slapd, and `lab down`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import orchestrator
from config.load import load_deployment
from config.model import Deployment
from orchestrator.lab import lab_down, lab_status, lab_up
from orchestrator.lab._slapd import is_our_slapd, slapd_available, stop_slapd

# vcsim and slapd started, three nodes driven through real (vcsim) VMs: about 40 s.
pytestmark = [pytest.mark.vcsim, pytest.mark.slow]

CHECKOUT = Path(orchestrator.__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`orchestrator ARGS` as its own process, from this checkout."""
    command = [sys.executable, "-c", "from orchestrator.cli import main; main()", *args]
    return subprocess.run(command, cwd=CHECKOUT, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def lab_dir(tmp_path: Path, vcsim_binary: Path) -> Path:
    """A lab directory with the session's vcsim already built in it (lab up builds none)."""
    if (why := slapd_available()) is not None:
        pytest.skip(why)
    lab = tmp_path / "lab"
    (lab / "bin").mkdir(parents=True)
    for built in (vcsim_binary, vcsim_binary.with_name("vcsim.sha256")):
        shutil.copy2(built, lab / "bin" / built.name)
    return lab


def test_the_lab_runs_to_ldap_authenticated_against_its_slapd(lab_dir: Path) -> None:
    """`lab up` starts slapd beside vcsim and `lab status --json` lists it; the run stops at the security wizard's
    gate, and once approved, with slapd stopped, fails at ldap_connection naming it (the run asks the lab's slapd,
    nothing else); `lab up` starts that slapd again and the run ends every node at ldap_authenticated, the Manager
    LDAP-only with client certificates; `lab down` stops both."""
    status = lab_up(lab_dir)
    try:
        config = status["config"]
        deployment = load_deployment(config)
        assert deployment.ldap.mode == "real" and deployment.ldap.transport == "starttls"
        listed = json.loads(_cli("lab", "status", "--dir", str(lab_dir), "--json").stdout)["ldap"]
        assert listed["running"] and listed["url"] == f"ldap://127.0.0.1:{deployment.ldap.port}/"
        assert listed["bind_dn"] == deployment.ldap.bind_username and listed["ca_file"] == deployment.ldap.ca_file
        assert deployment.ldap.bind_password is not None
        assert listed["password_ref"] == deployment.ldap.bind_password.ref  # a reference, never the password

        first = _cli("-c", config, "-q", "run")
        assert first.returncode == 3, first.stderr[-3000:]  # the security wizard's gate
        approve = _cli("-c", config, "approve", deployment.management.name, "security_wizard", "--by", "test")
        assert approve.returncode == 0, approve.stderr

        stop_slapd(listed["pid"])
        down = _cli("-c", config, "-q", "resume", "--all")
        assert down.returncode == 1 and f"cannot connect to LDAP server 127.0.0.1:{deployment.ldap.port}" in down.stderr

        again = lab_up(lab_dir)  # vcsim still up: only slapd starts again, same port, same data
        assert again["vcenter"]["pid"] == status["vcenter"]["pid"] and again["ldap"]["running"]
        done = _cli("-c", config, "-q", "resume", "--all")
        assert done.returncode == 0, done.stderr[-3000:]
        nodes = json.loads(_cli("-c", config, "status", "--json").stdout)
        assert {n["node"]: n["state"] for n in nodes["nodes"]} == dict.fromkeys(
            [deployment.management.name, *(c.name for c in deployment.conferencing)], "ldap_authenticated"
        )
        _check_the_lab_ca_signed_every_node(config, deployment, lab_dir)
    finally:
        stopped = lab_down(lab_dir)
    assert stopped["stopped"] and not is_our_slapd(again["ldap"]["pid"])
    after = lab_status(lab_dir)
    assert not after["ldap"]["running"] and not after["vcenter"]["running"]


def _check_the_lab_ca_signed_every_node(config: str, deployment: Deployment, lab_dir: Path) -> None:
    """The lab's CA is a real one (pki.ca_chain, the lab CA, signing by `openssl x509 -req`): openssl verifies each
    node's CSR (self-signature) and its certificate against that chain, for the CSR's key, with the node's name and
    both usages; `cert renew` has it sign again and
    checks the new certificate against that chain."""
    assert deployment.pki.mode == "command" and deployment.pki.ca_chain is not None
    for node in deployment.nodes:
        signed = lab_dir / "ca" / "inbox" / f"{deployment.subject_name(node)}.pem"
        verify = subprocess.run(["openssl", "verify", "-CAfile", deployment.pki.ca_chain, str(signed)], **_TEXT)
        assert verify.returncode == 0 and verify.stdout.strip().endswith(": OK"), verify.stderr
        ext = subprocess.run(["openssl", "x509", "-in", str(signed), "-noout", "-ext", _EXTENSIONS], **_TEXT)
        assert f"DNS:{deployment.subject_name(node)}" in ext.stdout, ext.stdout
        assert "TLS Web Server Authentication, TLS Web Client Authentication" in ext.stdout, ext.stdout
        csr = lab_dir / "ca" / "outbox" / f"{deployment.subject_name(node)}.csr"  # what the Manager generated
        checked = subprocess.run(["openssl", "req", "-in", str(csr), "-noout", "-verify", "-pubkey"], **_TEXT)
        assert checked.returncode == 0 and "verify OK" in checked.stdout + checked.stderr, checked.stderr
        key = subprocess.run(["openssl", "x509", "-in", str(signed), "-noout", "-pubkey"], **_TEXT).stdout
        assert key and key in checked.stdout  # the certificate is for the CSR's key
    # A renewal (same key) is signed by the lab CA again and passes cert import's checks against that chain.
    signed = lab_dir / "ca" / "inbox" / f"{deployment.subject_name(deployment.management)}.pem"
    before = _serial(signed)
    renewed = _cli("-c", config, "-q", "cert", "renew", deployment.management.name, "--by", "test")
    assert renewed.returncode == 0, renewed.stderr[-3000:]
    assert _serial(signed) != before
    verify = subprocess.run(["openssl", "verify", "-CAfile", deployment.pki.ca_chain, str(signed)], **_TEXT)
    assert verify.returncode == 0, verify.stderr


def _serial(cert: Path) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-serial"], **_TEXT).stdout.strip()


_TEXT: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 30, "check": False}
_EXTENSIONS = "subjectAltName,extendedKeyUsage"
