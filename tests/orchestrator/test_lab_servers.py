"""The lab's network simulators: one process serving the Management API and the provisioning interfaces."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from adapters.sim._pki import make_root
from config.load import load_deployment
from orchestrator.lab import VCSIM_USER, Vcsim, lab_status, write_lab_config
from orchestrator.lab._servers import is_our_servers, start_servers, stop_servers


def _vcsim(lab: Path) -> Vcsim:
    """A Vcsim record with no process behind it (the deployment file only names its URL and CA)."""
    ca_file = lab / "pki" / "vcsim-ca.pem"
    ca_file.parent.mkdir(parents=True, exist_ok=True)
    ca_file.write_text(make_root("Lab test CA")[1])
    return Vcsim(
        url="https://127.0.0.1:4443/sdk",
        user=VCSIM_USER,
        password="lab-password",
        ca_file=ca_file,
        cert_file=lab / "pki" / "vcsim.pem",
        pid=0,
        port=4443,
        workdir=lab / "vcsim",
        keys_file=lab / "vcsim" / "keys.jsonl",
        requests_file=lab / "vcsim" / "requests.jsonl",
    )


def _status(url: str, ca_file: str) -> int:
    try:
        with urllib.request.urlopen(url, context=ssl.create_default_context(cafile=ca_file), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_lab_without_simulators_reports_pexip_api_not_running(tmp_path: Path) -> None:
    """lab status lists pexip_api (url, user, password, ca_file) and provisioning even where no lab runs."""
    status = lab_status(tmp_path)
    assert set(status["pexip_api"]) >= {"url", "user", "password", "ca_file", "running"}
    assert status["pexip_api"]["running"] is False and status["provisioning"] == {}


@pytest.mark.slow
def test_the_simulators_serve_and_the_deployment_file_points_the_real_clients_at_them(tmp_path: Path) -> None:
    """The process answers on 127.0.0.1 (503 until the Manager is installed, as a booting Manager); the
    deployment file then has pexip_api real with the Manager's certificate and every node's interface
    pinned; a restarted process keeps those certificates; stopping it leaves no process."""
    lab = tmp_path / "lab"
    vc = _vcsim(lab)
    write_lab_config(lab, vc)
    info = start_servers(lab)
    try:
        assert is_our_servers(info["pid"])
        api = info["pexip_api"]
        assert _status(api["url"] + "/admin/login/", api["ca_file"]) == 503  # the wizard has not run
        deployment = load_deployment(write_lab_config(lab, vc, servers=info))
        port = api["url"].rsplit(":", 1)[1]
        assert (
            deployment.pexip_api.mode == "real" and deployment.pexip_api.url == f"https://pexmgr.lab.example.com:{port}"
        )
        assert deployment.pexip_api.address == "127.0.0.1"
        assert deployment.simulation.shared
        assert [n.provisioning_thumbprint for n in deployment.conferencing] == [
            info["provisioning"][n.name]["thumbprint"] for n in deployment.conferencing
        ]
    finally:
        stop_servers(info["pid"])
    assert not is_our_servers(info["pid"])
    again = start_servers(lab)
    try:
        assert again["provisioning"] == {
            name: {**node, "url": again["provisioning"][name]["url"]} for name, node in info["provisioning"].items()
        }  # same pins
        assert Path(again["pexip_api"]["ca_file"]).read_text() == Path(api["ca_file"]).read_text()
    finally:
        stop_servers(again["pid"])
