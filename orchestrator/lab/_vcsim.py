"""vcsim, VMware's vCenter simulator: built from Debian's govmomi sources, started, supervised, stopped.

The project's Go ``main`` (``orchestrator/lab/vcsim/main.go``, package data) is built into
``<lab>/bin/vcsim`` once per change of its source; each vcsim runs on 127.0.0.1 with TLS, a private TMPDIR (its
datastores), and logs of the key events and SOAP calls it received. A vcsim started by a
test dies with the test process; one started by ``lab up`` runs in a session of its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config.errors import OrchestratorError
from orchestrator.lab._files import write_private
from orchestrator.lab._pki import Pki
from orchestrator.lab._process import is_our_process, stop_process

__all__ = [
    "APT_PACKAGES",
    "GOPATH",
    "GOVMOMI",
    "REPO",
    "VCSIM_MAIN",
    "VCSIM_USER",
    "LabError",
    "Vcsim",
    "build_vcsim",
    "go_available",
    "is_our_vcsim",
    "start_vcsim",
    "stop_pid",
]

REPO = Path(__file__).resolve().parents[2]  # the source checkout (site-packages when installed)
# Package data: an installed orchestrator (pip, pipx) builds the lab from its own copy.
VCSIM_MAIN = Path(str(resources.files("orchestrator.lab") / "vcsim" / "main.go"))
GOPATH = Path("/usr/share/gocode")
GOVMOMI = GOPATH / "src" / "github.com" / "vmware" / "govmomi"
APT_PACKAGES = "golang-go golang-github-vmware-govmomi-dev"
VCSIM_USER = "administrator@vsphere.local"


class LabError(OrchestratorError):
    """The lab cannot be built or started; the message says what to install or fix."""


def go_available() -> str | None:
    """``None`` when vcsim can be built here, else why not (for skips and errors)."""
    if shutil.which("go") is None:
        return f"the Go toolchain is not installed (apt-get install -y {APT_PACKAGES})"
    if not (GOVMOMI / "simulator").is_dir():
        return f"govmomi sources are not under {GOVMOMI} (apt-get install -y {APT_PACKAGES})"
    return None


# --- build ------------------------------------------------------------------------------


def build_vcsim(lab_dir: Path) -> Path:
    """``<lab>/bin/vcsim``, built from ``VCSIM_MAIN`` unless already built from it.

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
        # GOCACHE: the caller's, else under the checkout's .lab (shared by every lab dir: a
        # warm build takes about a second, a cold one 15), else the lab's own: works as root
        # in CI, where HOME may be unset, and in an installed copy (site-packages read-only).
        source_checkout = (REPO / "pyproject.toml").is_file()
        cache = os.environ.get("GOCACHE") or (REPO / ".lab" if source_checkout else lab_dir) / "gocache"
        env = {
            **os.environ,
            "GO111MODULE": "off",
            "GOPATH": str(GOPATH),
            "GOCACHE": str(cache),
            "CGO_ENABLED": "0",
            "GOFLAGS": "",
        }
        tmp = binary.with_name(f"vcsim.{os.getpid()}.tmp")
        result = subprocess.run(
            ["go", "build", "-o", str(tmp), str(VCSIM_MAIN)],
            env=env,
            cwd=lab_dir,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise LabError(f"building vcsim failed:\n{result.stderr.strip()[-2000:]}")
        tmp.replace(binary)
        stamp.write_text(wanted)
    return binary


# --- the process: start, watch, stop ------------------------------------------------------


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
        return is_our_vcsim(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (vcsim exits at once), SIGKILL if it lingers."""
        stop_pid(self.pid, self.process, timeout)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_our_vcsim(pid: int | None) -> bool:
    """``pid`` is alive and is a vcsim (not a recycled pid of something else)."""
    return is_our_process(pid, program="vcsim")


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


def stop_pid(pid: int, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if process is not None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        return
    stop_process(pid, is_our_vcsim, timeout)


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
    write_private(password_file, password.encode())
    out, log = workdir / "vcsim.out", workdir / "vcsim.log"
    keys_file, requests_file = workdir / "keys.jsonl", workdir / "requests.jsonl"
    for fresh in (out, keys_file, requests_file):  # what a restarted vcsim records starts anew
        fresh.write_text("")
    args = [
        str(binary),
        "-listen",
        f"127.0.0.1:{port}",
        "-cert",
        str(pki.cert_file),
        "-key",
        str(pki.key_file),
        "-user",
        VCSIM_USER,
        "-password-file",
        str(password_file),
        "-hosts",
        str(hosts),
        "-clusters",
        str(clusters),
        "-cluster-hosts",
        str(cluster_hosts),
        "-vms",
        str(vms),
        "-keys",
        str(keys_file),
        "-requests",
        str(requests_file),
        "-tmpdir",
        str(workdir / "tmp"),
    ]
    if delay:
        args += ["-delay", ",".join(f"{k}={v}" for k, v in delay.items())]
    env = {**os.environ, "TMPDIR": str(workdir / "tmp")}
    process: subprocess.Popen[bytes] | None = None
    if detach:
        # A session of its own that outlives this process (`lab up` returns at once);
        # no Popen object, which would warn when collected with its child still running.
        flags = os.O_WRONLY | os.O_APPEND
        pid = os.posix_spawn(
            binary,
            args,
            env,
            setsid=True,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(out), flags, 0o600),
                (os.POSIX_SPAWN_OPEN, 2, str(log), flags | os.O_CREAT, 0o600),
            ],
        )
    else:
        with open(out, "ab") as stdout, open(log, "ab") as stderr:
            process = subprocess.Popen(
                args,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=workdir,
                preexec_fn=_die_with_parent,
            )
        pid = process.pid
    deadline = time.monotonic() + timeout
    while True:
        text = out.read_text().strip()
        if text:
            info = json.loads(text.splitlines()[0])
            break
        # Alive, not "our vcsim": right after the spawn the child may not have exec'd yet.
        if not _alive(pid) or time.monotonic() > deadline:
            stop_pid(pid, process, 1.0)
            tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
            raise LabError(f"vcsim did not start:\n{tail}")
        time.sleep(0.01)
    url = info["url"]
    return Vcsim(
        url=url,
        user=VCSIM_USER,
        password=password,
        ca_file=pki.ca_file,
        cert_file=pki.cert_file,
        pid=pid,
        port=urlsplit(url).port or 443,
        workdir=workdir,
        keys_file=keys_file,
        requests_file=requests_file,
        process=process,
    )
