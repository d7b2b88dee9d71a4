"""Fixtures for the config tests: the example deployment as data, and a way to write edited copies."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import config
from adapters.sim._pki import issue_certificate, load_certs, load_key, make_root, new_key
from config._x509 import UPN_OID

EXAMPLE = Path(config.__file__).with_name("example.toml")
DELETE = "<delete>"  # an edit value: remove the key (a string, so parametrize tables can spell it)


def dump_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for the shapes the deployment file uses (tables, arrays of tables, scalars)."""

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    def is_table_array(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    lines: list[str] = []

    def table(path: str, d: dict[str, Any]) -> None:
        for k, v in d.items():
            if not isinstance(v, dict) and not is_table_array(v):
                lines.append(f"{key(k)} = {value(v)}")
        for k, v in d.items():
            sub = f"{path}.{key(k)}" if path else key(k)
            if isinstance(v, dict):
                lines.extend(["", f"[{sub}]"])
                table(sub, v)
            elif is_table_array(v):
                for item in v:
                    lines.extend(["", f"[[{sub}]]"])
                    table(sub, item)

    table("", data)
    return "\n".join(lines) + "\n"


def _step(container: Any, part: str) -> tuple[Any, Any]:
    """Split "name[2]" into the container holding it and the key/index to use."""
    m = re.fullmatch(r"([^\[]+)\[(\d+)\]", part)
    if m:
        return container[m.group(1)], int(m.group(2))
    return container, part


def edit(data: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    """Apply ``{"conferencing[0].vlan": 4095, "bios.password": DELETE, ...}`` to ``data`` in place.

    A callable value is called with the current value and its result is stored.
    """
    for path, new in edits.items():
        parts = path.split(".")
        target: Any = data
        for part in parts[:-1]:
            holder, k = _step(target, part)
            if isinstance(k, str) and k not in holder:
                holder[k] = {}
            target = holder[k]
        holder, k = _step(target, parts[-1])
        if new == DELETE:
            del holder[k]
        else:
            holder[k] = new(holder[k]) if callable(new) else new
    return data


@pytest.fixture
def example_data() -> dict[str, Any]:
    """The example deployment as a fresh dict."""
    return tomllib.loads(EXAMPLE.read_text())


@pytest.fixture
def write_config(tmp_path: Path, example_data: dict[str, Any]) -> Callable[..., Path]:
    """Write the example with ``edits`` applied to a file in ``tmp_path``; return its path."""

    def write(edits: dict[str, Any] | None = None, name: str = "deployment.toml") -> Path:
        path = tmp_path / name
        path.write_text(dump_toml(edit(example_data, edits or {})))
        return path

    return write


@pytest.fixture
def example_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Make every secret of the example readable: env vars set, the client key file in ``tmp_path``."""
    for name in (
        "VCENTER_PASSWORD",
        "BIOS_PASSWORD",
        "PEXIP_ADMIN_PASSWORD",
        "PEXIP_CONSOLE_PASSWORD",
        "NTP_KEY_1",
        "NTP_KEY_2",
        "SNMP_AUTH_PASSWORD",
        "SNMP_PRIV_PASSWORD",
        "LDAP_BIND_PASSWORD",
        "LDAP_VERIFY_PASSWORD",
        "PEXIP_BOOTSTRAP_KEY",
    ):
        monkeypatch.setenv(name, f"test-value-of-{name.lower()}")
    key = tmp_path / "certs" / "orchestrator-admin.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text("-----BEGIN PRIVATE KEY-----\ntest\n-----END PRIVATE KEY-----\n")
    return tmp_path


def journal_signing_key(directory: Path) -> Path:
    """An Ed25519 journal signing key (0600) outside ``directory``, where the example's journal lives."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = directory.parent / f"{directory.name}.keys" / "journal-key.pem"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def client_certificate(
    ca_key: str,
    ca: str,
    cn: str,
    *,
    upn: str | None = None,
    usages: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    is_ca: bool = False,
) -> str:
    """A client certificate (PEM) for ``cn`` (and a userPrincipalName ``upn``) issued by the CA ``(ca_key, ca)``."""
    key = new_key("ECDSAP256")
    sans = [x509.OtherName(UPN_OID, b"\x0c" + bytes([len(upn.encode())]) + upn.encode())] if upn else []
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = issue_certificate(
        name, key.public_key(), load_key(ca_key), issuer=load_certs(ca)[0], ca=is_ca, sans=sans, usages=usages
    )
    return cert.public_bytes(Encoding.PEM).decode()


def write_example_files(directory: Path) -> None:
    """Create every file the example names (CA files, client certificate, known_hosts, OVAs) in ``directory``."""
    ca_key, ca = make_root("Example test CA")
    (directory / "certs").mkdir(parents=True, exist_ok=True)
    for name in ("vcenter-ca.pem", "ca-chain.pem"):
        (directory / "certs" / name).write_text(ca)
    # The orchestrator's client certificate: ldap.verify_user in its CN, issued by the chain's CA.
    (directory / "certs" / "orchestrator-admin.pem").write_text(client_certificate(ca_key, ca, "orchestrator"))
    (directory / "certs" / "known_hosts").write_text("pexmgr.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest\n")
    (directory / "images").mkdir(exist_ok=True)
    for name in ("Pexip_Infinity_pxMgr.ova", "Pexip_Infinity_ConfNode.ova"):
        (directory / "images" / name).write_bytes(b"ova")


def write_runnable_example(directory: Path) -> Path:
    """The example with its files present, the systems whose real adapter is not built yet simulated, and
    LDAP simulated too (its real adapter would ask a directory server that is not there)."""
    write_example_files(directory)
    text = EXAMPLE.read_text()
    for table in ("pexip_api", "console", "ldap"):
        text = text.replace(f'[{table}]\nmode = "real"', f'[{table}]\nmode = "sim"')
    text = text.replace("file:/etc/orchestrator/journal-key.pem", f"file:{journal_signing_key(directory)}")
    path = directory / "deployment.toml"
    path.write_text(text)
    return path
