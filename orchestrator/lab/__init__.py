"""The local lab: simulators on 127.0.0.1 and a deployment file that ``run`` uses against them.

So far the lab holds VMware's own vCenter simulator, vcsim, built from Debian's govmomi
sources by the project's Go ``main`` (``lab/vcsim/main.go``), served over TLS with the
lab's own test CA. ``lab_up`` builds it when needed, starts it on a free loopback port,
shapes its inventory the way the guide wants a host (a second vSwitch for the VMs,
portgroups with VLANs, a VM folder), writes test OVAs, secrets and the deployment file,
and remembers all of it in ``<lab>/state.json`` for ``lab_status`` and ``lab_down``.

Needs the Debian packages ``golang-go`` and ``golang-github-vmware-govmomi-dev``.

The functions below it (``build_vcsim``, ``start_vcsim``, ``prepare_inventory``,
``make_test_pki``, ``make_test_ova``, ``write_lab_config``) are what the tests use to
run their own vcsim instances.

Example::

    status = lab_up(Path(".lab"))
    print(status["vcenter"]["url"], status["config"])
    lab_down(Path(".lab"))
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import io
import ipaddress
import json
import os
import secrets
import shutil
import signal
import ssl
import struct
import subprocess
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config.errors import OrchestratorError

__all__ = [
    "LAB_HOSTS",
    "LabError",
    "Pki",
    "Vcsim",
    "build_vcsim",
    "go_available",
    "lab_down",
    "lab_status",
    "lab_up",
    "make_test_ova",
    "make_test_pki",
    "prepare_inventory",
    "start_vcsim",
    "stream_vmdk",
    "thumbprint_of",
    "write_lab_config",
]

REPO = Path(__file__).resolve().parents[2]
VCSIM_MAIN = REPO / "lab" / "vcsim" / "main.go"
GOPATH = Path("/usr/share/gocode")
GOVMOMI = GOPATH / "src" / "github.com" / "vmware" / "govmomi"
APT_PACKAGES = "golang-go golang-github-vmware-govmomi-dev"
VCSIM_USER = "administrator@vsphere.local"

# The lab's hosts as vcsim names them, and how lab_up shapes each: the VMs' vSwitch and
# the Pexip portgroup with its VLAN. vcsim refuses one portgroup name on two hosts (vSphere
# would share it), hence one name per host.
LAB_HOSTS: dict[str, dict[str, Any]] = {
    "DC0_H0": {"vswitch": "vSwitch1", "portgroup": "Pexip-VLAN100", "vlan": 100},
    "DC0_C0_H0": {"vswitch": "vSwitch1", "portgroup": "Pexip-VLAN200", "vlan": 200},
}


class LabError(OrchestratorError):
    """The lab cannot be built or started; the message says what to install or fix."""


def go_available() -> str | None:
    """``None`` when vcsim can be built here, else why not (for skips and errors)."""
    if shutil.which("go") is None:
        return f"the Go toolchain is not installed (apt-get install -y {APT_PACKAGES})"
    if not (GOVMOMI / "simulator").is_dir():
        return f"govmomi sources are not under {GOVMOMI} (apt-get install -y {APT_PACKAGES})"
    return None


# --- test PKI ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_test_pki(directory: Path, *, name: str = "vcsim", ca_name: str = "Pexip Orchestrator Lab CA") -> Pki:
    """A test CA and a 2048-bit server certificate for 127.0.0.1/localhost, made once.

    govmomi's built-in certificate is 1024-bit, which OpenSSL 3 refuses.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory / f"{name}-ca.pem", directory / f"{name}.pem", directory / f"{name}.key")
    if pki.ca_file.is_file() and pki.cert_file.is_file() and pki.key_file.is_file():
        return pki
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_subject).issuer_name(ca_subject)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])).issuer_name(ca_subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(pki.key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return pki


def thumbprint_of(cert_file: Path) -> str:
    """``sha256:AA:BB:...`` of a PEM certificate: what ``vcenter.thumbprint`` pins."""
    der = ssl.PEM_cert_to_DER_cert(cert_file.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


# --- test OVA ----------------------------------------------------------------------------


def stream_vmdk(capacity_bytes: int) -> bytes:
    """A valid stream-optimized sparse VMDK of ``capacity_bytes``, all zeros (no grains).

    Layout (VMware Virtual Disk Format 1.1, stream-optimized): header, descriptor,
    then the grain directory (every entry 0: nothing allocated) behind its marker, the
    footer (the header again, now with the directory's offset) and end-of-stream.
    """
    sector, grain, gtes = 512, 128, 512
    capacity = -(-capacity_bytes // sector)
    descriptor = (
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n\n"
        f"# Extent description\nRDONLY {capacity} SPARSE \"disk.vmdk\"\n\n# The Disk Data Base\n#DDB\n\n"
        "ddb.adapterType = \"lsilogic\"\nddb.geometry.cylinders = \"1\"\nddb.geometry.heads = \"255\"\n"
        "ddb.geometry.sectors = \"63\"\nddb.virtualHWVersion = \"13\"\n"
    ).encode()
    desc_sectors = -(-len(descriptor) // sector)
    overhead = max(grain, 1 + desc_sectors)
    gd_entries = -(-capacity // (grain * gtes))
    gd_sectors = -(-gd_entries * 4 // sector)

    def header(gd_offset: int) -> bytes:
        body = struct.pack(
            "<IIIQQQQIQQQBccccH",
            0x564D444B, 3, 0x30001, capacity, grain, 1, desc_sectors, gtes, 0, gd_offset, overhead,
            0, b"\n", b" ", b"\r", b"\n", 1,
        )
        return body.ljust(sector, b"\0")

    def marker(value: int, kind: int) -> bytes:
        return struct.pack("<QII", value, 0, kind).ljust(sector, b"\0")

    out = io.BytesIO()
    out.write(header(0xFFFFFFFFFFFFFFFF))  # GD_AT_END: the footer has the real offset
    out.write(descriptor.ljust(desc_sectors * sector, b"\0"))
    out.write(b"\0" * ((overhead - 1 - desc_sectors) * sector))
    out.write(marker(gd_sectors, 2))  # grain directory marker
    gd_offset = out.tell() // sector
    out.write(b"\0" * (gd_sectors * sector))
    out.write(marker(1, 3))  # footer marker
    out.write(header(gd_offset))
    out.write(marker(0, 0))  # end of stream
    return out.getvalue()


def make_test_ova(path: Path, *, name: str = "pexip-test", cpus: int = 4, memory_mb: int = 4096,
                  disk_mb: int = 1, network: str = "VM Network") -> Path:
    """A tiny, valid OVA: OVF 1.0 descriptor, SHA-256 manifest and one stream VMDK.

    Shaped like Pexip's: one SCSI (LSI Logic) disk at 0:0, one VMXNET3 NIC.
    """
    disk = stream_vmdk(disk_mb << 20)
    descriptor = f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="{name}-disk1.vmdk" ovf:id="file1" ovf:size="{len(disk)}"/></References>
  <DiskSection><Info>Virtual disks</Info>
    <Disk ovf:capacity="{disk_mb}" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1"
        ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection><Info>Networks</Info><Network ovf:name="{network}"><Description>The VM network</Description></Network></NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A test image shaped like a Pexip Infinity node</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="otherLinux64Guest"><Info>Guest OS</Info></OperatingSystemSection>
    <VirtualHardwareSection><Info>Virtual hardware</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier><vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType></System>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:ElementName>{cpus} virtual CPUs</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>{memory_mb} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>{memory_mb}</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:ElementName>SCSI controller 0</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>7</rasd:AddressOnParent><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>{network}</rasd:Connection><rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
""".encode()
    files = [(f"{name}.ovf", descriptor)]
    manifest = "".join(f"SHA256({n})= {hashlib.sha256(b).hexdigest()}\n" for n, b in (files[0], (f"{name}-disk1.vmdk", disk)))
    files += [(f"{name}.mf", manifest.encode()), (f"{name}-disk1.vmdk", disk)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:  # the OVF must come first
        for member, data in files:
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return path


# --- vcsim: build, start, stop -------------------------------------------------------------


def build_vcsim(lab_dir: Path) -> Path:
    """``<lab>/bin/vcsim``, built from ``lab/vcsim/main.go`` unless already built from it.

    Raises:
        LabError: Go or the govmomi sources are missing, or the build failed.
    """
    lab_dir = Path(lab_dir).resolve()
    binary = lab_dir / "bin" / "vcsim"
    stamp = binary.with_name("vcsim.sha256")
    wanted = hashlib.sha256(VCSIM_MAIN.read_bytes()).hexdigest()
    if binary.is_file() and stamp.is_file() and stamp.read_text().strip() == wanted:
        return binary
    if (why := go_available()) is not None:
        raise LabError(f"cannot build vcsim: {why}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with open(binary.with_name(".build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build once
        if binary.is_file() and stamp.is_file() and stamp.read_text().strip() == wanted:
            return binary
        # GOCACHE under the repository's .lab (shared by every lab dir: a warm build takes
        # about a second, a cold one 15): works as root in CI, where HOME may be unset.
        env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOCACHE": str(REPO / ".lab" / "gocache"),
               "CGO_ENABLED": "0", "GOFLAGS": ""}
        tmp = binary.with_name(f"vcsim.{os.getpid()}.tmp")
        result = subprocess.run(["go", "build", "-o", str(tmp), str(VCSIM_MAIN)], env=env, cwd=REPO,
                                capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            raise LabError(f"building vcsim failed:\n{result.stderr.strip()[-2000:]}")
        tmp.replace(binary)
        stamp.write_text(wanted)
    return binary


@dataclass
class Vcsim:
    """A running vcsim, and where it records what it was asked."""

    url: str
    user: str
    password: str
    ca_file: Path
    cert_file: Path
    pid: int
    port: int
    workdir: Path
    keys_file: Path
    requests_file: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def keys(self) -> list[dict[str, Any]]:
        """Key events received by ``PutUsbScanCodes``, in order."""
        return _read_jsonl(self.keys_file)

    def requests(self) -> list[dict[str, Any]]:
        """Every SOAP call received (``method``, ``this``), in order."""
        return _read_jsonl(self.requests_file)

    def running(self) -> bool:
        return _is_our_vcsim(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (vcsim exits at once), SIGKILL if it lingers."""
        _stop_pid(self.pid, self.process, timeout)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _is_our_vcsim(pid: int | None) -> bool:
    """``pid`` is alive and is a vcsim (not a recycled pid of something else)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return bool(cmdline) and Path(cmdline[0].decode(errors="replace")).name == "vcsim" and ") Z" not in stat


def _die_with_parent() -> None:
    """In the child: SIGTERM when the parent dies, so a killed test run leaves no vcsim behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _alive(pid: int) -> bool:
    try:
        return ") Z" not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


def _stop_pid(pid: int, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if process is not None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        return
    if not _is_our_vcsim(pid):
        _reap(pid)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_our_vcsim(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.02)
    if _is_our_vcsim(pid):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child (a lab started in this process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def start_vcsim(
    workdir: Path,
    *,
    binary: Path,
    pki: Pki,
    port: int = 0,
    password: str | None = None,
    hosts: int = 1,
    clusters: int = 1,
    cluster_hosts: int = 3,
    vms: int = 2,
    delay: Mapping[str, int] | None = None,
    detach: bool = False,
    timeout: float = 15.0,
) -> Vcsim:
    """Start vcsim on 127.0.0.1 (``port`` 0: a free one) with TLS and a private TMPDIR.

    Args:
        workdir: its files: log, TMPDIR (its datastores), the keys and requests logs.
        delay: milliseconds added per SOAP method (fault tests stop it mid-call).
        detach: a process of its own session that outlives the caller (``lab up``).

    Raises:
        LabError: it did not come up; the message carries the end of its log.
    """
    workdir = Path(workdir).resolve()
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_urlsafe(18)
    password_file = workdir / "vcenter-password"
    _write_private(password_file, password.encode())
    out, log = workdir / "vcsim.out", workdir / "vcsim.log"
    keys_file, requests_file = workdir / "keys.jsonl", workdir / "requests.jsonl"
    for fresh in (out, keys_file, requests_file):  # what a restarted vcsim records starts anew
        fresh.write_text("")
    args = [
        str(binary), "-listen", f"127.0.0.1:{port}", "-cert", str(pki.cert_file), "-key", str(pki.key_file),
        "-user", VCSIM_USER, "-password-file", str(password_file),
        "-hosts", str(hosts), "-clusters", str(clusters), "-cluster-hosts", str(cluster_hosts), "-vms", str(vms),
        "-keys", str(keys_file), "-requests", str(requests_file), "-tmpdir", str(workdir / "tmp"),
    ]
    if delay:
        args += ["-delay", ",".join(f"{k}={v}" for k, v in delay.items())]
    env = {**os.environ, "TMPDIR": str(workdir / "tmp")}
    process: subprocess.Popen[bytes] | None = None
    if detach:
        # A session of its own that outlives this process (`lab up` returns at once);
        # no Popen object, which would warn when collected with its child still running.
        flags = os.O_WRONLY | os.O_APPEND
        pid = os.posix_spawn(binary, args, env, setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(out), flags, 0o600),
            (os.POSIX_SPAWN_OPEN, 2, str(log), flags | os.O_CREAT, 0o600),
        ])
    else:
        with open(out, "ab") as stdout, open(log, "ab") as stderr:
            process = subprocess.Popen(args, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env, cwd=workdir,
                                       preexec_fn=_die_with_parent)
        pid = process.pid
    deadline = time.monotonic() + timeout
    while True:
        text = out.read_text().strip()
        if text:
            info = json.loads(text.splitlines()[0])
            break
        # Alive, not "our vcsim": right after the spawn the child may not have exec'd yet.
        if not _alive(pid) or time.monotonic() > deadline:
            _stop_pid(pid, process, 1.0)
            tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
            raise LabError(f"vcsim did not start:\n{tail}")
        time.sleep(0.01)
    url = info["url"]
    return Vcsim(url=url, user=VCSIM_USER, password=password, ca_file=pki.ca_file, cert_file=pki.cert_file,
                 pid=pid, port=urlsplit(url).port or 443, workdir=workdir, keys_file=keys_file,
                 requests_file=requests_file, process=process)


# --- the lab inventory ---------------------------------------------------------------------


def prepare_inventory(vc: Vcsim, *, hosts: Mapping[str, Mapping[str, Any]] = LAB_HOSTS, folder: str = "pexip") -> None:
    """Shape vcsim like a host the guide accepts: per host a vSwitch for the VMs apart
    from vSwitch0 (management), a Pexip portgroup with its VLAN on it; and a VM folder.
    Idempotent: what exists is left alone."""
    from pyVim.connect import Disconnect, SmartConnect
    from pyVmomi import vim

    parts = urlsplit(vc.url)
    si = SmartConnect(host=parts.hostname, port=parts.port, user=vc.user, pwd=vc.password,
                      sslContext=ssl.create_default_context(cafile=str(vc.ca_file)))
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
        by_name = {h.name: h for h in view.view}
        for name, shape in hosts.items():
            net = by_name[name].configManager.networkSystem
            info = net.networkInfo
            if shape["vswitch"] not in {s.name for s in info.vswitch or ()}:
                net.AddVirtualSwitch(vswitchName=shape["vswitch"], spec=vim.host.VirtualSwitch.Specification(numPorts=128))
            if shape["portgroup"] not in {p.spec.name for p in info.portgroup or ()}:
                net.AddPortGroup(portgrp=vim.host.PortGroup.Specification(
                    name=shape["portgroup"], vlanId=shape["vlan"], vswitchName=shape["vswitch"], policy=vim.host.NetworkPolicy()))
        dc = content.searchIndex.FindByInventoryPath("DC0")
        if folder and content.searchIndex.FindByInventoryPath(f"DC0/vm/{folder}") is None:
            dc.vmFolder.CreateFolder(folder)
    finally:
        Disconnect(si)


# --- the lab's deployment file ---------------------------------------------------------------


_SECRETS = ("bios-password", "pexip-admin-password", "ntp-key-1", "ntp-key-2", "snmp-auth-password",
            "snmp-priv-password", "ldap-bind-password", "ldap-verify-password")


def _secret_file(path: Path, value: str | None = None) -> Path:
    if value is not None or not path.is_file():
        _write_private(path, (value or secrets.token_urlsafe(18)).encode())
    return path


def write_lab_config(lab_dir: Path, vc: Vcsim, *, name: str = "lab", iops_capacity: int = 20000) -> Path:
    """``<lab>/orchestrator.toml``: vCenter real (the vcsim, its CA), every other system sim.

    Secrets are ``file:`` references to files in ``<lab>/secrets``. Nodes: the Management
    Node and one Conferencing Node on DC0_H0, one Conferencing Node on DC0_C0_H0.
    """
    lab_dir = Path(lab_dir).resolve()
    secret_dir = lab_dir / "secrets"
    secret_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _secret_file(secret_dir / "vcenter-password", vc.password)
    for s in _SECRETS:
        _secret_file(secret_dir / s)
    images = lab_dir / "images"
    management_ova = make_test_ova(images / "pexip-mgmt-test.ova", name="pexip-mgmt", cpus=4, memory_mb=8192)
    conferencing_ova = make_test_ova(images / "pexip-conf-test.ova", name="pexip-conf", cpus=4, memory_mb=4096)
    h0, h1 = LAB_HOSTS["DC0_H0"], LAB_HOSTS["DC0_C0_H0"]

    def host(hname: str, shape: Mapping[str, Any]) -> str:
        return (f'[[vcenter.hosts]]\nname = "{hname}"\ndatastore = "LocalDS_0"\ndatastore_iops_capacity = {iops_capacity}\n'
                f'vm_network = "{shape["vswitch"]}"\nmanagement_network = "Management Network"\nmax_concurrent = 2\n')

    def node(table: str, nname: str, hostname: str, address: str, hname: str, shape: Mapping[str, Any], memory: int, extra: str = "") -> str:
        return (f'[{table}]\nname = "{nname}"\nhostname = "{hostname}"\ndomain = "lab.example.com"\naddress = "{address}"\n'
                f'netmask = "255.255.255.0"\ngateway = "10.99.0.1"\nhost = "{hname}"\nportgroup = "{shape["portgroup"]}"\n'
                f'vlan = {shape["vlan"]}\ncpus = 4\nmemory_mb = {memory}\ndisk_iops_limit = 1000\n{extra}')

    conf_extra = 'location = "Lab"\nsip_tls_fqdn = "{0}.lab.example.com"\n'
    text = "\n".join([
        "# Written by `orchestrator lab up`: the lab's vcsim (vCenter, real mode, TLS with the lab CA)",
        "# and every other system simulated. Lab test credentials only.\n",
        f'[deployment]\nname = "{name}"\n',
        f'[vcenter]\nmode = "real"\nurl = "{vc.url}"\nuser = "{vc.user}"\npassword = "file:{secret_dir / "vcenter-password"}"\n'
        f'ca_file = "{vc.ca_file}"\ndatacenter = "DC0"\nfolder = "pexip"\nreserved_vlans = [1, 1002, 1003, 1004, 1005]\n'
        'name_pattern = "pexip-*"\n',
        host("DC0_H0", h0),
        host("DC0_C0_H0", h1),
        f'[ova]\nmanagement = "{management_ova}"\nconferencing = "{conferencing_ova}"\n',
        f'[bios]\npassword = "file:{secret_dir / "bios-password"}"\npassword_method = "keystrokes"\n',
        node("management", "pexip-mgmt", "pexmgr", "10.99.0.10", "DC0_H0", h0, 8192),
        node("[conferencing]", "pexip-conf-01", "conf01", "10.99.0.21", "DC0_H0", h0, 4096, conf_extra.format("conf01")),
        node("[conferencing]", "pexip-conf-02", "conf02", "10.99.0.22", "DC0_C0_H0", h1, 4096, conf_extra.format("conf02")),
        f'[pexip_api]\nmode = "sim"\nurl = "https://pexmgr.lab.example.com"\nadmin_user = "admin"\n'
        f'admin_password = "file:{secret_dir / "pexip-admin-password"}"\n',
        '[console]\nmode = "sim"\n',
        '[network]\ndns_servers = ["10.99.0.2", "10.99.0.3"]\nlocations = ["Lab"]\n',
        f'[[network.ntp_servers]]\naddress = "10.99.0.4"\nkey_id = 1\nkey = "file:{secret_dir / "ntp-key-1"}"\n',
        f'[[network.ntp_servers]]\naddress = "10.99.0.5"\nkey_id = 2\nkey = "file:{secret_dir / "ntp-key-2"}"\n',
        '[[network.syslog_servers]]\naddress = "10.99.0.6"\nport = 6514\ntransport = "tls"\n',
        f'[snmp]\nusername = "pexip-snmp"\nauthentication_password = "file:{secret_dir / "snmp-auth-password"}"\n'
        f'privacy_password = "file:{secret_dir / "snmp-priv-password"}"\ncommunity = "pexip-lab"\n',
        '[global_settings]\nlogin_banner = "Lab deployment: authorised use only."\nocsp_responder_url = "http://ocsp.lab.example.com"\n',
        '[pki]\nmode = "sim"\ndn = "O=Lab,C=GB"\n',
        f'[ldap]\nmode = "sim"\nserver = "ldap.lab.example.com"\nbase_dn = "dc=lab,dc=example,dc=com"\n'
        f'bind_username = "cn=pexip-bind,ou=services,dc=lab,dc=example,dc=com"\n'
        f'bind_password = "file:{secret_dir / "ldap-bind-password"}"\nverify_user = "orchestrator"\n'
        f'verify_password = "file:{secret_dir / "ldap-verify-password"}"\n',
        *[f'[[ldap.role_mappings]]\nname = "Lab {role}"\ngroup_dn = "cn=lab-{role.lower()},ou=groups,dc=lab,dc=example,dc=com"\n'
          f'roles = ["{role}"]\n' for role in ("Administrator", "Read-write", "Read-only", "Auditor")],
        f'[simulation]\nworld = "{lab_dir / "world.sqlite"}"\n',
        f'[journal]\npath = "{lab_dir / "journal.sqlite"}"\n',
    ])
    path = lab_dir / "orchestrator.toml"
    path.write_text(text)
    return path


# --- lab up / down / status ------------------------------------------------------------------


def _state_file(lab_dir: Path) -> Path:
    return Path(lab_dir).resolve() / "state.json"


def lab_status(lab_dir: Path = Path(".lab")) -> dict[str, Any]:
    """Each simulator's ``url``, ``user``, ``password`` (lab test credentials), ``ca_file``,
    ``pid`` and ``running``, and ``config``: the deployment file for ``run``."""
    state_file = _state_file(lab_dir)
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    vcenter = state.get("vcenter") or {}
    return {
        "vcenter": {
            "url": vcenter.get("url"),
            "user": vcenter.get("user"),
            "password": vcenter.get("password"),
            "ca_file": vcenter.get("ca_file"),
            "pid": vcenter.get("pid"),
            "running": _is_our_vcsim(vcenter.get("pid")),
        },
        "config": state.get("config"),
    }


def lab_up(lab_dir: Path = Path(".lab")) -> dict[str, Any]:
    """Build and start the lab (once: a running lab is left as it is); its status.

    Raises:
        LabError: vcsim cannot be built or started.
    """
    lab_dir = Path(lab_dir).resolve()
    status = lab_status(lab_dir)
    if status["vcenter"]["running"]:
        return status
    lab_dir.mkdir(parents=True, exist_ok=True)
    pki = make_test_pki(lab_dir / "pki")
    binary = build_vcsim(lab_dir)
    workdir = lab_dir / "vcsim"
    shutil.rmtree(workdir / "tmp", ignore_errors=True)  # datastores of an earlier, killed run
    vc = start_vcsim(workdir, binary=binary, pki=pki, detach=True)
    try:
        prepare_inventory(vc)
        config = write_lab_config(lab_dir, vc)
    except BaseException:
        vc.stop()
        raise
    state = {
        "vcenter": {"url": vc.url, "user": vc.user, "password": vc.password, "ca_file": str(vc.ca_file), "pid": vc.pid},
        "config": str(config),
    }
    _write_private(_state_file(lab_dir), json.dumps(state, indent=2).encode())
    return lab_status(lab_dir)


def lab_down(lab_dir: Path = Path(".lab")) -> None:
    """Stop the lab's simulators and forget their state (built binaries and PKI stay)."""
    lab_dir = Path(lab_dir).resolve()
    status = lab_status(lab_dir)
    pid = status["vcenter"]["pid"]
    if pid:
        _stop_pid(pid, None, 5.0)
    shutil.rmtree(lab_dir / "vcsim" / "tmp", ignore_errors=True)
    _state_file(lab_dir).unlink(missing_ok=True)
