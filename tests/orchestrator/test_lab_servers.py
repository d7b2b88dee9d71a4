"""The lab's network simulators: one process serving the Management API and the provisioning interfaces."""

from __future__ import annotations

import asyncio
import ssl
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from adapters.console import SshConsole
from config.load import load_deployment
from config.model import Deployment
from orchestrator.lab import lab_status, repoint_lab_config, write_lab_config
from orchestrator.lab._servers import is_our_servers, start_servers, stop_servers
from tests.orchestrator.lab_records import fake_vcsim


async def _wizard_state(deployment: Deployment) -> str:
    async with SshConsole(deployment, poll_s=0.05, timeout_s=5) as console:
        return await console.wizard_state(deployment.management)


def _status(url: str, ca_file: str) -> int:
    try:
        with urllib.request.urlopen(url, context=ssl.create_default_context(cafile=ca_file), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_lab_without_simulators_reports_pexip_api_not_running(tmp_path: Path) -> None:
    """lab status lists pexip_api (url, user, password, ca_file), console and provisioning even where no lab runs."""
    status = lab_status(tmp_path)
    assert set(status["pexip_api"]) >= {"url", "user", "password", "ca_file", "running"}
    assert status["pexip_api"]["running"] is False and status["provisioning"] == {}
    assert set(status["console"]) >= {"url", "user", "password", "host_key_fingerprint", "running"}
    assert status["console"]["running"] is False


@pytest.mark.slow
def test_the_simulators_serve_and_the_deployment_file_points_the_real_clients_at_them(tmp_path: Path) -> None:
    """The process answers on 127.0.0.1 (503 until the Manager is installed, as a booting Manager); the
    deployment file then has pexip_api real with the Manager's certificate, the console real with its host key
    pinned and every node's interface pinned; a restarted process keeps those certificates, keys and ports;
    stopping it leaves no process."""
    lab = tmp_path / "lab"
    vc = fake_vcsim(lab)
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
        console = deployment.console
        assert (console.mode, console.address, console.port) == ("real", "127.0.0.1", info["console"]["port"])
        assert console.host_key_fingerprint == info["console"]["host_key_fingerprint"]
        assert deployment.management.address == info["console"]["static_address"] == "127.0.0.10"
        # The real client, pinned as the file says, finds the console at its "DHCP" address, wizard not run.
        assert asyncio.run(_wizard_state(deployment)) == "unconfigured"
    finally:
        stop_servers(info["pid"])
    assert not is_our_servers(info["pid"])
    again = start_servers(lab)
    try:
        assert again["provisioning"] == {
            name: {**node, "url": again["provisioning"][name]["url"]} for name, node in info["provisioning"].items()
        }  # same pins
        assert Path(again["pexip_api"]["ca_file"]).read_text() == Path(api["ca_file"]).read_text()
        assert again["pexip_api"]["url"] == api["url"]  # the same port: the deployment file still holds
        assert again["console"] == info["console"]  # same port, same host key
    finally:
        stop_servers(again["pid"])


def _servers(lab: Path, ca_file: str, port: int) -> dict[str, Any]:
    """What the simulators' process writes to servers.json, every service on ``port`` and up."""
    return {
        "pid": 0,
        "pexip_api": {
            "url": f"https://127.0.0.1:{port}",
            "ca_file": ca_file,
            "client_cert": ca_file,
            "client_key": str(lab / "pki" / "client.key"),
        },
        "console": {
            "address": "127.0.0.1",
            "static_address": "127.0.0.10",
            "port": port + 1,
            "host_key_fingerprint": "SHA256:" + "A" * 43,
            "public_key": "ssh-ed25519 AAAA",
        },
        "provisioning": {
            name: {"url": f"https://127.0.0.1:{port + 2 + i}/", "thumbprint": "sha256:" + ":".join(["AB"] * 32)}
            for i, name in enumerate(("pexip-conf-01", "pexip-conf-02"))
        },
    }


def test_a_lab_whose_simulators_moved_gets_its_deployment_file_pointed_at_them_again(tmp_path: Path) -> None:
    """Restarted simulators on other ports (a kept one was taken): the file follows them, its header and every
    other value kept, and the console stays real with its pin."""
    lab = tmp_path / "lab"
    vc = fake_vcsim(lab)
    path = write_lab_config(lab, vc, servers=_servers(lab, str(vc.ca_file), 40000))
    before = tomllib.loads(path.read_text())
    header = path.read_text().split("\n\n", 1)[0]
    repoint_lab_config(path, _servers(lab, str(vc.ca_file), 41000))
    after = tomllib.loads(path.read_text())
    assert path.read_text().startswith(header + "\n\n")
    assert after["pexip_api"]["url"] == "https://pexmgr.lab.example.com:41000"
    assert after["console"] == {**before["console"], "port": 41001}
    assert [n["provisioning_url"] for n in after["conferencing"]] == [
        "https://127.0.0.1:41002/",
        "https://127.0.0.1:41003/",
    ]
    unchanged = ("pexip_api", "console", "conferencing")
    assert {k: v for k, v in after.items() if k not in unchanged} == {
        k: v for k, v in before.items() if k not in unchanged
    }
    deployment = load_deployment(path, check_secrets=False)
    assert deployment.console.mode == "real" and deployment.console.port == 41001
