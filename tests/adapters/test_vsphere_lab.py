"""The lab: vcsim built and started with TLS, a deployment file that loads and passes the preflight, and the test
OVA."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest
from _vcsim import vcenter

from config.load import load_deployment
from orchestrator.lab import (
    go_available,
    lab_down,
    lab_status,
    lab_up,
    make_test_ova,
    stream_vmdk,
)

pytestmark = pytest.mark.vcsim


@pytest.fixture
def lab_dir(tmp_path: Path, vcsim_binary: Path) -> Path:
    return tmp_path / "lab"


async def test_lab_up_status_down(lab_dir: Path) -> None:
    """lab up starts vcsim over TLS and writes a deployment that loads and passes the preflight; down stops it."""
    status = lab_up(lab_dir)
    try:
        vcenter_status = status["vcenter"]
        assert vcenter_status["running"] and vcenter_status["url"].startswith("https://127.0.0.1:")
        assert set(vcenter_status) == {"url", "user", "password", "ca_file", "pid", "running"}
        assert lab_up(lab_dir)["vcenter"]["pid"] == vcenter_status["pid"], "a running lab is left as it is"
        deployment = load_deployment(status["config"])
        assert deployment.vcenter.mode == "real" and deployment.vcenter.ca_file == vcenter_status["ca_file"]
        assert deployment.console.mode == "real"  # the lab's SSH console server
        assert deployment.pki.mode == "command" and deployment.pki.ca_chain == vcenter_status["ca_file"]  # the lab CA
        assert deployment.ldap.mode == "real" and status["ldap"]["running"]  # the lab's slapd
        api = status["pexip_api"]
        assert deployment.pexip_api.mode == "real" and deployment.pexip_api.url == api["url"] and api["running"]
        assert set(api) == {"url", "address", "user", "password", "ca_file", "pid", "running"}
        console = status["console"]  # the lab's SSH console, in the simulators' process
        assert deployment.console.mode == "real" and console["running"] and console["pid"] == api["pid"]
        assert deployment.console.host_key_fingerprint == console["host_key_fingerprint"]
        assert console["url"] == f"ssh://127.0.0.1:{deployment.console.port}"
        async with vcenter(deployment) as vc:
            await vc.preflight(deployment)
        # An independent client trusts it through the lab CA only.
        port = vcenter_status["url"].split(":")[2].split("/")[0]
        check = await asyncio.to_thread(
            subprocess.run,
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-CAfile",
                vcenter_status["ca_file"],
                "-verify_return_error",
                "-verify_ip",
                "127.0.0.1",
            ],
            input=b"",
            capture_output=True,
            timeout=10,
            check=False,
        )
        assert b"Verify return code: 0 (ok)" in check.stdout
    finally:
        lab_down(lab_dir)
    after = lab_status(lab_dir)
    assert after["vcenter"]["running"] is False and after["ldap"]["running"] is False and after["config"] is None
    assert after["pexip_api"]["running"] is False


@pytest.mark.slow
def test_the_lab_lifecycle_runs_over_the_network_simulators(lab_dir: Path) -> None:
    """As `make lab-demo`: run stops at the security-wizard gate, approve, resume to the end with the
    Management API and the console real (the lab's servers: both wizards over SSH) and the nodes provisioned
    over HTTPS; a rerun changes nothing."""
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        code = "from orchestrator.cli import main; main()"
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)

    status = lab_up(lab_dir, fresh=True)
    config = status["config"]
    try:
        assert cli("-c", config, "run").returncode == 3
        assert (
            cli("-c", config, "approve", "pexip-mgmt", "security_wizard", "--by", "t", "--reason", "t").returncode == 0
        )
        done = cli("-c", config, "resume", "--all")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        again = cli("-c", config, "run")
        assert again.returncode == 0 and "0 step(s) changed" in again.stdout
    finally:
        lab_down(lab_dir, reset=True)


def test_status_of_a_lab_never_started(tmp_path: Path) -> None:
    """A lab directory without a lab reports every simulator as not running."""
    assert lab_status(tmp_path) == {
        "vcenter": {"url": None, "user": None, "password": None, "ca_file": None, "pid": None, "running": False},
        "ldap": {
            **dict.fromkeys(
                ("url", "ldaps_url", "bind_dn", "password_ref", "ca_file", "base_dn", "user", "client_cert", "pid")
            ),
            "running": False,
        },
        "pexip_api": {
            "url": None,
            "address": None,
            "user": None,
            "password": None,
            "ca_file": None,
            "pid": None,
            "running": False,
        },
        "console": {
            **dict.fromkeys(("url", "address", "static_address", "user", "password", "host_key_fingerprint", "pid")),
            "running": False,
        },
        "provisioning": {},
        "config": None,
    }


def test_the_test_ova_is_a_valid_ova(tmp_path: Path) -> None:
    """The OVA is a tar with the descriptor first, a manifest whose SHA-256 sums hold, and a stream VMDK."""
    path = make_test_ova(tmp_path / "t.ova", name="t", disk_mb=3)
    with tarfile.open(path) as tar:
        names = tar.getnames()
        data = {n: tar.extractfile(n).read() for n in names}  # type: ignore[union-attr]
    assert names == ["t.ovf", "t.mf", "t-disk1.vmdk"]
    for line in data["t.mf"].decode().splitlines():
        name, digest = line[len("SHA256(") :].split(")= ")
        assert hashlib.sha256(data[name]).hexdigest() == digest
    assert b'ovf:capacity="3"' in data["t.ovf"]


@pytest.mark.parametrize(
    "capacity",
    [
        1 << 20,  # 1 MiB: one grain directory entry
        (64 << 20) + 512,  # just over one grain table's reach: two entries
    ],
)
def test_stream_vmdk_layout(capacity: int) -> None:
    """Header, footer and end-of-stream marker are where the VMDK 1.1 format puts them."""
    vmdk = stream_vmdk(capacity)
    magic, version, flags, sectors, grain = struct.unpack_from("<IIIQQ", vmdk)
    assert (magic, version, flags, grain) == (0x564D444B, 3, 0x30001, 128)
    assert sectors == -(-capacity // 512)
    assert len(vmdk) % 512 == 0 and vmdk[-512:] == b"\0" * 512  # end of stream
    footer = vmdk[-1024:-512]
    gd_offset = struct.unpack_from("<Q", footer, 56)[0]
    # The grain directory marker (one sector of entries here), then the entries: all 0, nothing allocated.
    assert struct.unpack_from("<QII", vmdk, (gd_offset - 1) * 512) == (1, 0, 2)
    assert vmdk[gd_offset * 512 : (gd_offset + 1) * 512] == b"\0" * 512
    assert b'createType="streamOptimized"' in vmdk[512:1024]


def test_go_is_there_or_the_reason_says_what_to_install() -> None:
    """go_available names the Debian packages when the toolchain is missing."""
    why = go_available()
    assert why is None or "golang-github-vmware-govmomi-dev" in why
