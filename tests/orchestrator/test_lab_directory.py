"""The lab's directory: the slapd ``lab up`` starts for the lab deployment, and the orchestrator's client
certificate issued by the lab CA (no vcsim needed: a Vcsim record with no process behind it)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from adapters.ldap import LdapDirectory
from config._ready import file_problems
from config.load import load_deployment
from orchestrator.lab import VCSIM_USER, Vcsim, make_test_pki, write_lab_config
from orchestrator.lab._directory import ldap_status, start_lab_directory, stop_lab_directory
from orchestrator.lab._slapd import free_port, slapd_available


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    if (why := slapd_available()) is not None:
        pytest.skip(why)
    return tmp_path / "lab"


def _write(lab: Path, mode: str = "CN") -> Path:
    pki = make_test_pki(lab / "pki")
    url, password = "https://127.0.0.1:4443/sdk", "lab-password"
    vc = Vcsim(url, VCSIM_USER, password, pki.ca_file, pki.cert_file, 0, 4443, lab, lab, lab)
    config = write_lab_config(lab, vc, slapd_port=free_port())
    if mode == "UPN":  # a deployment that logs its identity in through the UPN
        config.write_text(config.read_text().replace("[ldap]\n", '[ldap]\nclient_certificate = "UPN"\n', 1))
    return config


@pytest.mark.parametrize("mode", ["CN", "UPN"])
async def test_the_lab_directory_holds_the_identity_its_client_certificate_names(lab: Path, mode: str) -> None:
    """The lab deployment has ldap real at the lab's slapd; the client certificate where pexip_api.client_cert
    points is the lab CA's (openssl verify), for ldap.verify_user in the CN or the UPN, passes the checks of a
    real pexip_api at load, and that identity is in the slapd, in every mapped group."""
    config = _write(lab, mode)
    pki = make_test_pki(lab / "pki")
    state = start_lab_directory(lab, config, pki)
    try:
        deployment = load_deployment(config)
        ldap, api = deployment.ldap, deployment.pexip_api
        assert (ldap.mode, ldap.transport, ldap.ca_file) == ("real", "starttls", str(pki.ca_file))
        assert state["url"] == f"ldap://127.0.0.1:{ldap.port}/" and ldap_status(state)["running"]
        assert ldap.bind_password is not None and api.client_key is not None
        assert state["bind_dn"] == ldap.bind_username and state["password_ref"] == ldap.bind_password.ref
        assert api.client_cert and Path(api.client_cert).is_file()
        key = Path(api.client_key.ref.removeprefix("file:"))
        assert key.stat().st_mode & 0o077 == 0
        verify = subprocess.run(
            ["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(pki.ca_file), api.client_cert],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verify.returncode == 0 and verify.stdout.strip().endswith(": OK"), verify
        text = subprocess.run(
            ["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName", "-in", api.client_cert],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert re.search(rf"CN\s*=\s*{ldap.verify_user}\b", text)
        assert ("othername" in text.lower()) == (mode == "UPN")
        # What load checks of the client certificate of a real Management API: nothing to say.
        real = dataclasses.replace(
            deployment,
            pexip_api=dataclasses.replace(api, mode="real"),
            pki=dataclasses.replace(deployment.pki, ca_chain=str(pki.ca_file)),
        )
        assert [p for p in file_problems(real) if p[0] == "pexip_api.client_cert"] == []
        async with LdapDirectory.from_deployment(deployment) as directory:
            await directory.verify_bind()
            groups = await directory.user_groups(
                f"{ldap.verify_user}@lab.example.com" if mode == "UPN" else ldap.verify_user
            )
        assert sorted(g.lower() for g in groups) == sorted(m.group_dn.lower() for m in ldap.role_mappings)
    finally:
        assert stop_lab_directory(state)
    assert not ldap_status(state)["running"]
    assert not stop_lab_directory(state)  # stopped already: nothing to stop
