"""A private OpenLDAP ``slapd`` on a loopback port: the real directory of the LDAP tests.

The directory is shaped from a deployment's ``[ldap]`` section (:func:`directory_entries`):
the base DN, the service account ``ldap.bind_username`` with ``ldap.bind_password``, the
user ``ldap.verify_user`` (``uid=...`` under ``ldap.user_search_dn``) with
``ldap.verify_password``, and one ``groupOfNames`` per ``ldap.role_mappings[*].group_dn``
with the verify user as member (or the members a test names). StartTLS with a certificate
of the project's test PKI (:func:`orchestrator.lab.make_test_pki`), and ``olcSecurity:
ssf=64``: a bind without TLS is refused by the server itself. Only authenticated users read.

    with running_slapd(tmp_path / "slapd", deployment.ldap, pki) as slapd:
        deployment = slapd.pointed_at(deployment)   # ldap.mode "real", server/port/ca_file of slapd

Start-up (two ``slapadd`` and the server) takes well under a second; SIGTERM stops it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
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

import pytest
from ldap3 import BASE, MODIFY_REPLACE, NONE, Connection, Server, Tls
from ldap3.protocol.rfc2849 import safe_ldif_string
from ldap3.utils.dn import parse_dn

from config.model import Deployment, LdapSpec
from orchestrator.lab._pki import Pki

__all__ = ["Slapd", "running_slapd", "directory_entries", "user_dn", "ldif", "SLAPD"]

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
_SCHEMAS = ("core", "cosine", "nis", "inetorgperson")

Entry = tuple[str, dict[str, list[str]]]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ssha(password: str) -> str:
    """``{SSHA}`` of ``password``: slapd compares binds against it (the clear value is never stored)."""
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def ldif(entries: Sequence[Entry]) -> str:
    """LDIF content records (RFC 2849): a value that is not safe as it is goes base64."""
    lines: list[str] = []
    for dn, attributes in entries:
        for name, values in (("dn", [dn]), *attributes.items()):
            for value in values:
                raw = value.encode()
                if safe_ldif_string(raw):
                    lines.append(f"{name}: {value}")
                else:
                    lines.append(f"{name}:: {base64.b64encode(raw).decode()}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _under(relative: str, base_dn: str) -> str:
    """``ldap.user_search_dn``/``group_search_dn`` are relative to the base DN (as on the Manager)."""
    return f"{relative},{base_dn}" if relative else base_dn


def user_dn(ldap: LdapSpec, uid: str | None = None) -> str:
    """The DN of a user of the test directory (default: ``ldap.verify_user``)."""
    return f"uid={uid or ldap.verify_user},{_under(ldap.user_search_dn, ldap.base_dn)}"


def _rdn(dn: str) -> tuple[str, str]:
    attribute, value, _ = parse_dn(dn)[0]
    return attribute, value


def _container(dn: str) -> Entry:
    """An entry that only holds others: the base (dcObject) or an organizational unit."""
    attribute, value = _rdn(dn)
    if attribute.lower() == "dc":
        return dn, {"objectClass": ["top", "dcObject", "organization"], "dc": [value], "o": [value]}
    if attribute.lower() == "ou":
        return dn, {"objectClass": ["top", "organizationalUnit"], "ou": [value]}
    return dn, {"objectClass": ["top", "organizationalRole"], "cn": [value]}


def directory_entries(
    ldap: LdapSpec,
    *,
    members: Mapping[str, Sequence[str]] | None = None,
    users: Mapping[str, str] | None = None,
) -> list[Entry]:
    """The entries of a directory shaped like ``ldap``, parents before children.

    Args:
        ldap: the deployment's section; its passwords are read (``reveal``) to be hashed.
        members: group DN -> member DNs (default: every mapped group has the verify user); a
            group of the mappings missing here is not created (a test's missing group).
        users: more users, uid -> password, beside the verify user.
    """
    base = ldap.base_dn
    assert ldap.bind_password is not None and ldap.verify_password is not None
    if members is None:
        members = {m.group_dn: [user_dn(ldap)] for m in ldap.role_mappings}
    people = {ldap.verify_user: ldap.verify_password.reveal(), **(users or {})}
    leaves: list[Entry] = []
    bind_cn = _rdn(ldap.bind_username)[1]
    leaves.append(
        (
            ldap.bind_username,
            {
                "objectClass": ["top", "inetOrgPerson"],
                "cn": [bind_cn],
                "sn": [bind_cn],
                "userPassword": [_ssha(ldap.bind_password.reveal())],
            },
        )
    )
    for uid, password in people.items():
        leaves.append(
            (
                user_dn(ldap, uid),
                {
                    "objectClass": ["top", "inetOrgPerson"],
                    "uid": [uid],
                    "cn": [uid],
                    "sn": [uid],
                    "userPassword": [_ssha(password)],
                },
            )
        )
    for group, member_dns in members.items():
        # groupOfNames needs a member: an empty group holds the empty DN, as directories do.
        group_cn = _rdn(group)[1]
        leaves.append((group, {"objectClass": ["groupOfNames"], "cn": [group_cn], "member": list(member_dns) or [""]}))
    entries: dict[str, Entry] = {base.lower(): _container(base)}
    for relative in (ldap.user_search_dn, ldap.group_search_dn):
        if relative:
            dn = _under(relative, base)
            entries.setdefault(dn.lower(), _container(dn))
    for dn, attributes in leaves:
        # Every parent between the base and the entry, so that slapadd finds it.
        parts = [f"{a}={v}" for a, v, _ in parse_dn(dn)]
        for i in range(len(parts) - 1, 0, -1):
            parent = ",".join(parts[i:])
            if parent.lower().endswith(base.lower()) and len(parent) > len(base):
                entries.setdefault(parent.lower(), _container(parent))
        entries[dn.lower()] = (dn, attributes)
    return sorted(entries.values(), key=lambda e: len(parse_dn(e[0])))


def _config(
    directory: Path, base_dn: str, root_dn: str, root_password: str, pki: Pki | None, limits: Sequence[str]
) -> str:
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
                "olcSecurity": ["ssf=64"],
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
                "olcRootPW": [_ssha(root_password)],
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
    """A running private slapd, and what a test needs to talk to it."""

    port: int
    ca_file: Path
    base_dn: str
    root_dn: str
    root_password: str
    config_dir: str
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def pointed_at(self, deployment: Deployment) -> Deployment:
        """``deployment`` with ``ldap`` in real mode at this server (its CA as ``ldap.ca_file``)."""
        ldap = dataclasses.replace(
            deployment.ldap, mode="real", server="127.0.0.1", port=self.port, ca_file=str(self.ca_file)
        )
        return dataclasses.replace(deployment, ldap=ldap)

    @contextmanager
    def admin(self) -> Iterator[Connection]:
        """A connection bound as the directory's root DN over StartTLS, to change it under a test."""
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
        with self.admin() as conn:
            conn.search(group_dn, "(objectClass=*)", search_scope=BASE, attributes=["member"])
            left = [m for m in conn.entries[0].member.values if m.lower() != member_dn.lower()]
            conn.modify(group_dn, {"member": [(MODIFY_REPLACE, left or [""])]})

    def delete(self, dn: str) -> None:
        with self.admin() as conn:
            conn.delete(dn)

    def start(self) -> None:
        """Start the server (again, after :meth:`stop`: same port, same data); ready when its port accepts."""
        # The log is a file, not a pipe: a full pipe would block a long-lived server.
        with self.log.open("ab") as out:
            command = [SLAPD, "-F", self.config_dir, "-d", "0", "-h", f"ldap://127.0.0.1:{self.port}/"]
            self.process = subprocess.Popen(command, stdout=out, stderr=out)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"slapd did not start: {self.log.read_text(errors='replace')}") from exc
                time.sleep(0.01)

    def stop(self) -> None:
        """SIGTERM, and wait (slapd exits in milliseconds); idempotent."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        """Stop and start again: every client connection is cut, the data stays."""
        self.stop()
        self.start()


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")


@contextmanager
def running_slapd(
    directory: Path,
    ldap: LdapSpec,
    pki: Pki | None,
    *,
    members: Mapping[str, Sequence[str]] | None = None,
    users: Mapping[str, str] | None = None,
    limits: Sequence[str] = (),
) -> Iterator[Slapd]:
    """Start a slapd holding :func:`directory_entries` of ``ldap`` on a free loopback port; stop it on exit.

    ``pki`` None: a server without TLS (StartTLS is refused), to prove the client never falls back.
    ``limits``: ``olcLimits`` values of the database (e.g. ``dn.exact="..." size.prtotal=unlimited``).
    """
    if not (Path(SLAPD).exists() and Path(SLAPADD).exists()):
        pytest.skip("slapd is not installed (Debian packages slapd ldap-utils; scripts/setup.sh installs them)")
    for sub in ("slapd.d", "db", "run"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    root_dn, root_password = f"cn=admin,{ldap.base_dn}", secrets.token_urlsafe(18)
    (directory / "config.ldif").write_text(_config(directory, ldap.base_dn, root_dn, root_password, pki, limits))
    (directory / "data.ldif").write_text(ldif(directory_entries(ldap, members=members, users=users)))
    config_dir = str(directory / "slapd.d")
    _run([SLAPADD, "-n", "0", "-F", config_dir, "-l", str(directory / "config.ldif")])
    _run([SLAPADD, "-n", "1", "-F", config_dir, "-l", str(directory / "data.ldif")])
    slapd = Slapd(
        _free_port(),
        pki.ca_file if pki else Path(os.devnull),
        ldap.base_dn,
        root_dn,
        root_password,
        config_dir,
        directory / "slapd.log",
    )
    try:
        slapd.start()
        yield slapd
    finally:
        slapd.stop()
