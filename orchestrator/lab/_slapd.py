"""A private OpenLDAP ``slapd`` on loopback ports: the lab's directory and the LDAP tests' real one.

The directory is shaped from a deployment's ``[ldap]`` section
(:func:`orchestrator.lab._slapd_data.directory_entries`). With a PKI it listens twice: plain
LDAP with StartTLS on ``port`` and ldaps (TLS from the first byte) on ``ldaps_port``, with a
certificate of the lab's test PKI (:func:`orchestrator.lab.make_test_pki`); ``olcSecurity:
ssf=64``: a bind without TLS is refused by the server itself. Only authenticated users read.

    with running_slapd(tmp_path / "slapd", deployment.ldap, pki) as slapd:
        deployment = slapd.pointed_at(deployment)   # ldap.mode "real", server/port/ca_file of slapd

    slapd = prepare_slapd(lab_dir / "slapd", deployment.ldap, pki)   # the lab: outlives its caller
    slapd.start(detach=True)   # a daemon; its pid in slapd.pid; stop_slapd(pid) stops it

Start-up (two ``slapadd`` and the server) takes well under a second; SIGTERM stops it.
Needs the Debian packages ``slapd`` and ``ldap-utils``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from config.model import Deployment, LdapSpec
from orchestrator.lab._pki import Pki
from orchestrator.lab._process import is_our_process, stop_process
from orchestrator.lab._vcsim import LabError

if TYPE_CHECKING:  # ldap3 is loaded by what talks LDAP, not by `lab status` and `lab down`
    from ldap3 import Connection

    from orchestrator.lab._slapd_data import Entry

__all__ = [
    "SLAPD",
    "Slapd",
    "free_port",
    "is_our_slapd",
    "prepare_slapd",
    "running_slapd",
    "slapd_available",
    "stop_slapd",
]

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
_SCHEMAS = ("core", "cosine", "nis", "inetorgperson")


def slapd_available() -> str | None:
    """``None`` when slapd can run here, else why not (for skips and errors)."""
    if Path(SLAPD).exists() and Path(SLAPADD).exists():
        return None
    return "slapd is not installed (Debian packages slapd ldap-utils; scripts/setup.sh installs them)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(
    directory: Path,
    base_dn: str,
    root_dn: str,
    root_password: str,
    pki: Pki | None,
    limits: Sequence[str],
    require_tls: bool,
) -> str:
    from orchestrator.lab._slapd_data import ldif, ssha

    tls = (
        {
            "olcTLSCACertificateFile": [str(pki.ca_file)],
            "olcTLSCertificateFile": [str(pki.cert_file)],
            "olcTLSCertificateKeyFile": [str(pki.key_file)],
        }
        if pki
        else {}
    )
    head: list[Entry] = [
        (
            "cn=config",
            {
                "objectClass": ["olcGlobal"],
                "cn": ["config"],
                "olcPidFile": [str(directory / "run" / "slapd.pid")],
                # A bind or search without TLS (security strength factor < 64) is refused.
                **({"olcSecurity": ["ssf=64"]} if require_tls else {}),
                **tls,
            },
        ),
        (
            "cn=module{0},cn=config",
            {"objectClass": ["olcModuleList"], "cn": ["module{0}"], "olcModulePath": ["/usr/lib/ldap"]}
            | {"olcModuleLoad": ["back_mdb"]},
        ),
        ("cn=schema,cn=config", {"objectClass": ["olcSchemaConfig"], "cn": ["schema"]}),
    ]
    includes = "".join(f"include: file:///etc/ldap/schema/{name}.ldif\n\n" for name in _SCHEMAS)
    databases: list[Entry] = [
        (
            "olcDatabase={1}mdb,cn=config",
            {
                "objectClass": ["olcDatabaseConfig", "olcMdbConfig"],
                "olcDatabase": ["{1}mdb"],
                "olcDbDirectory": [str(directory / "db")],
                "olcSuffix": [base_dn],
                "olcRootDN": [root_dn],
                "olcRootPW": [ssha(root_password)],
                "olcAccess": [
                    "{0}to attrs=userPassword by anonymous auth by * none",
                    "{1}to * by users read by * none",
                ],
                # Without an olcLimits, slapd answers at most 500 entries per search (paged or not).
                **({"olcLimits": list(limits)} if limits else {}),
            },
        ),
    ]
    return ldif(head) + includes + ldif(databases)


@dataclass
class Slapd:
    """A private slapd (running once started), and what a caller needs to talk to it."""

    port: int  # plain LDAP, StartTLS offered when there is a PKI
    ldaps_port: int | None  # ldaps (None: no PKI, no TLS at all)
    ca_file: Path
    base_dn: str
    root_dn: str
    root_password: str
    config_dir: str
    log: Path
    pid_file: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    @property
    def ldaps_url(self) -> str | None:
        return f"ldaps://127.0.0.1:{self.ldaps_port}/" if self.ldaps_port else None

    def pointed_at(
        self, deployment: Deployment, transport: Literal["starttls", "ldaps", "plain"] = "starttls"
    ) -> Deployment:
        """``deployment`` with ``ldap`` in real mode at this server (its CA as ``ldap.ca_file``)."""
        port = self.ldaps_port if transport == "ldaps" else self.port
        assert port is not None, "a slapd without a PKI has no ldaps listener"
        ldap = dataclasses.replace(
            deployment.ldap,
            mode="real",
            server="127.0.0.1",
            port=port,
            ca_file=str(self.ca_file),
            transport=transport,
        )
        return dataclasses.replace(deployment, ldap=ldap)

    @contextmanager
    def admin(self) -> Iterator[Connection]:
        """A connection bound as the directory's root DN over StartTLS, to change it under a test."""
        from ldap3 import NONE, Connection, Server, Tls

        tls = Tls(ca_certs_file=str(self.ca_file), validate=ssl.CERT_REQUIRED)
        server = Server("127.0.0.1", port=self.port, tls=tls, get_info=NONE, connect_timeout=5)
        conn = Connection(server, self.root_dn, self.root_password, raise_exceptions=True)
        conn.open()
        conn.start_tls()
        conn.bind()
        try:
            yield conn
        finally:
            conn.unbind()

    def remove_member(self, group_dn: str, member_dn: str) -> None:
        """Take ``member_dn`` out of the group (the last member leaves the empty DN: groupOfNames needs one)."""
        from ldap3 import BASE, MODIFY_REPLACE

        with self.admin() as conn:
            conn.search(group_dn, "(objectClass=*)", search_scope=BASE, attributes=["member"])
            left = [m for m in conn.entries[0].member.values if m.lower() != member_dn.lower()]
            conn.modify(group_dn, {"member": [(MODIFY_REPLACE, left or [""])]})  # type: ignore[no-untyped-call]

    def delete(self, dn: str) -> None:
        with self.admin() as conn:
            conn.delete(dn)  # type: ignore[no-untyped-call]

    def start(self, *, detach: bool = False) -> None:
        """Start the server (again, after :meth:`stop`: same ports, same data); ready when its ports accept.

        ``detach``: slapd daemonizes (``lab up``: it outlives the caller); its pid is read from its pid file.
        """
        listeners = " ".join(u for u in (self.url, self.ldaps_url) if u)
        command = [SLAPD, "-F", self.config_dir, "-h", listeners]
        self.pid_file.unlink(missing_ok=True)
        # The log is a file, not a pipe: a full pipe would block a long-lived server.
        with self.log.open("ab") as out:
            if detach:  # without -d slapd forks, the parent exits once the daemon listens
                done = subprocess.run(command, stdout=out, stderr=out, stdin=subprocess.DEVNULL, check=False)
                if done.returncode != 0:
                    raise LabError(f"slapd did not start ({done.returncode}): {self._log_tail()}")
            else:
                self.process = subprocess.Popen([*command, "-d", "0"], stdout=out, stderr=out)
        deadline = time.monotonic() + 10
        for port in (self.port, self.ldaps_port):
            while port is not None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError as exc:
                    if (self.process is not None and self.process.poll() is not None) or time.monotonic() > deadline:
                        self.stop()
                        raise LabError(f"slapd did not start: {self._log_tail()}") from exc
                    time.sleep(0.01)
        self.pid = self.process.pid if self.process is not None else _read_pid(self.pid_file)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:] if self.log.is_file() else ""

    def stop(self) -> None:
        """SIGTERM, and wait (slapd exits in milliseconds); idempotent."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        elif self.pid is not None:
            stop_slapd(self.pid)

    def restart(self) -> None:
        """Stop and start again: every client connection is cut, the data stays."""
        self.stop()
        self.start(detach=self.process is None and self.pid is not None)


def _read_pid(pid_file: Path) -> int | None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            return int(pid_file.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.01)
    return None


def is_our_slapd(pid: int | None) -> bool:
    """``pid`` is alive and is a slapd (not a recycled pid of something else)."""
    return is_our_process(pid, program="slapd")


def stop_slapd(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM to the slapd ``pid`` (a daemon of ``lab up``), SIGKILL if it lingers; nothing if it is not ours."""
    stop_process(pid, is_our_slapd, timeout)


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(args[:4])} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")


def prepare_slapd(
    directory: Path,
    ldap: LdapSpec,
    pki: Pki | None,
    *,
    members: Mapping[str, Sequence[str]] | None = None,
    users: Mapping[str, str] | None = None,
    limits: Sequence[str] = (),
    require_tls: bool = True,
    port: int | None = None,
    ldaps_port: int | None = None,
) -> Slapd:
    """A new slapd in ``directory`` (emptied first) with the entries of ``ldap``, on free loopback ports; not started.

    ``pki`` None: a server without TLS (StartTLS is refused, no ldaps), to prove the client never falls back.
    ``limits``: ``olcLimits`` values of the database (e.g. ``dn.exact="..." size.prtotal=unlimited``).
    ``require_tls`` False: no ``ssf=64`` (plain binds accepted: the policy that permits no TLS).
    ``port``, ``ldaps_port``: where it listens (default: free ports).

    Raises:
        LabError: slapd is not installed, or ``slapadd`` refused the configuration or the data.
    """
    from orchestrator.lab._slapd_data import directory_entries, ldif

    if (why := slapd_available()) is not None:
        raise LabError(why)
    shutil.rmtree(directory, ignore_errors=True)
    for sub in ("slapd.d", "db", "run"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)  # the root password's hash and the data
    root_dn, root_password = f"cn=admin,{ldap.base_dn}", secrets.token_urlsafe(18)
    config = _config(directory, ldap.base_dn, root_dn, root_password, pki, limits, require_tls)
    (directory / "config.ldif").write_text(config)
    (directory / "data.ldif").write_text(ldif(directory_entries(ldap, members=members, users=users)))
    config_dir = str(directory / "slapd.d")
    _run([SLAPADD, "-n", "0", "-F", config_dir, "-l", str(directory / "config.ldif")])
    _run([SLAPADD, "-n", "1", "-F", config_dir, "-l", str(directory / "data.ldif")])
    return Slapd(
        port or free_port(),
        (ldaps_port or free_port()) if pki else None,
        pki.ca_file if pki else Path(os.devnull),
        ldap.base_dn,
        root_dn,
        root_password,
        config_dir,
        directory / "slapd.log",
        directory / "run" / "slapd.pid",
    )


@contextmanager
def running_slapd(
    directory: Path,
    ldap: LdapSpec,
    pki: Pki | None,
    *,
    members: Mapping[str, Sequence[str]] | None = None,
    users: Mapping[str, str] | None = None,
    limits: Sequence[str] = (),
    require_tls: bool = True,
) -> Iterator[Slapd]:
    """:func:`prepare_slapd`, started as a child of this process; stopped on exit."""
    slapd = prepare_slapd(directory, ldap, pki, members=members, users=users, limits=limits, require_tls=require_tls)
    try:
        slapd.start()
        yield slapd
    finally:
        slapd.stop()
