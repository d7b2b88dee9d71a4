"""The lab's deployment file: vCenter real (the lab's vcsim), LDAP real when the lab runs a slapd
(``lab up`` does), the Management API and the SSH console real when the lab's network simulators run
(:mod:`orchestrator.lab._servers`; ``lab up`` starts them), the CA the lab CA itself (``pki.mode = "command"``,
``pki.ca_chain`` its file).

``servers.toml`` beside it is the same deployment as the simulators see it (the Manager simulated,
the world shared with the runs); ``orchestrator.toml`` points the real clients at them.

Built as data and written with ``tomli_w``, so that any value (a path with a quote, a
name with a backslash or a newline) reads back from the file exactly as it was given.
"""

from __future__ import annotations

import copy
import itertools
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from orchestrator.lab._files import write_private
from orchestrator.lab._inventory import LAB_HOSTS
from orchestrator.lab._ova import make_test_ova
from orchestrator.lab._servers import CONSOLE_PASSWORD
from orchestrator.lab._vcsim import Vcsim

__all__ = ["SECRETS", "lab_config", "repoint_lab_config", "write_lab_config"]

# The lab's secrets besides the vCenter password, one file each in <lab>/secrets.
SECRETS = (
    "bios-password",
    "pexip-admin-password",
    "ntp-key-1",
    "ntp-key-2",
    "snmp-auth-password",
    "snmp-priv-password",
    "ldap-bind-password",
    "ldap-verify-password",
    CONSOLE_PASSWORD,
)

_HEADER = (
    "# Written by `orchestrator lab up`: the lab's vcsim (vCenter, real mode, TLS with the lab CA),\n"
    "# {real}the lab CA signing the nodes' certificates (pki command), every other system simulated.\n"
    "# Lab test credentials only.\n\n"
)
_LDAP_HEADER = "the lab's slapd (LDAP, real mode, StartTLS with the lab CA),\n# "
_API_HEADER = (
    "the lab's Management API server and SSH console (real mode, the real clients) and each\n"
    "# Conferencing Node's provisioning interface on 127.0.0.1,\n# "
)
_SERVERS_HEADER = (
    "# Written by `orchestrator lab up` for the lab's network simulators (orchestrator.lab._servers):\n"
    "# the lab's deployment with the Manager simulated, over the world shared with the runs.\n\n"
)

_DOMAIN = "lab.example.com"
# The Manager's static address is a loopback one: the lab's SSH console moves there after the installation
# wizard (before it, it answers at 127.0.0.1, as a node at its DHCP address), so the real client finds it.
_MANAGER_ADDRESS, _MANAGER_GATEWAY = "127.0.0.10", "127.0.0.254"
# A new Manager's two built-in roles and the guide's Auditor; no "Administrator" (pexip-api.md 7.1).
_ROLES = ("Read-write", "Read-only", "Auditor")


def _host(name: str, shape: Mapping[str, Any], iops_capacity: int) -> dict[str, Any]:
    return {
        "name": name,
        "datastore": "LocalDS_0",
        "datastore_iops_capacity": iops_capacity,
        "vm_network": shape["vswitch"],
        "management_network": "Management Network",
        "max_concurrent": 2,
    }


def _node(
    name: str, hostname: str, address: str, host: str, memory_mb: int, gateway: str = "10.99.0.1"
) -> dict[str, Any]:
    shape = LAB_HOSTS[host]
    return {
        "name": name,
        "hostname": hostname,
        "domain": _DOMAIN,
        "address": address,
        "netmask": "255.255.255.0",
        "gateway": gateway,
        "host": host,
        "portgroup": shape["portgroup"],
        "vlan": shape["vlan"],
        "cpus": 4,
        "memory_mb": memory_mb,
        "disk_iops_limit": 1000,
    }


def _conferencing(name: str, hostname: str, address: str, host: str) -> dict[str, Any]:
    return {**_node(name, hostname, address, host, 4096), "location": "Lab", "sip_tls_fqdn": f"{hostname}.{_DOMAIN}"}


def lab_config(
    lab_dir: Path,
    vc: Vcsim,
    *,
    management_ova: Path,
    conferencing_ova: Path,
    name: str = "lab",
    iops_capacity: int = 20000,
    slapd_port: int | None = None,
) -> dict[str, Any]:
    """The lab's deployment as the TOML document's data, nothing written.

    Secrets are ``file:`` references to files in ``<lab>/secrets``. Nodes: the Management
    Node and one Conferencing Node on DC0_H0, one Conferencing Node on DC0_C0_H0.
    ``slapd_port``: the lab's slapd (StartTLS, the lab CA) listens there: ``ldap`` is real, and
    the orchestrator's client certificate is ``<lab>/pki/orchestrator-admin.pem`` (and ``.key``).
    """
    secret_dir = lab_dir / "secrets"

    def secret(file: str) -> str:
        return f"file:{secret_dir / file}"

    data: dict[str, Any] = {
        "deployment": {"name": name},
        "vcenter": {
            "mode": "real",
            "url": vc.url,
            "user": vc.user,
            "password": secret("vcenter-password"),
            "ca_file": str(vc.ca_file),
            "datacenter": "DC0",
            "folder": "pexip",
            "reserved_vlans": [1, 1002, 1003, 1004, 1005],
            "name_pattern": "pexip-*",
            "hosts": [_host(h, LAB_HOSTS[h], iops_capacity) for h in ("DC0_H0", "DC0_C0_H0")],
        },
        "ova": {"management": str(management_ova), "conferencing": str(conferencing_ova)},
        "bios": {"password": secret("bios-password"), "password_method": "keystrokes"},
        "management": _node("pexip-mgmt", "pexmgr", _MANAGER_ADDRESS, "DC0_H0", 8192, _MANAGER_GATEWAY),
        "conferencing": [
            _conferencing("pexip-conf-01", "conf01", "10.99.0.21", "DC0_H0"),
            _conferencing("pexip-conf-02", "conf02", "10.99.0.22", "DC0_C0_H0"),
        ],
        "pexip_api": {
            "mode": "sim",
            "url": f"https://pexmgr.{_DOMAIN}",
            "admin_user": "admin",
            "admin_password": secret("pexip-admin-password"),
            "bootstrap_key": secret("pexip-bootstrap-key"),
        },
        "console": {"mode": "sim"},
        "network": {
            "dns_servers": ["10.99.0.2", "10.99.0.3"],
            "locations": ["Lab"],
            "ntp_servers": [
                {"address": "10.99.0.4", "key_id": 1, "key": secret("ntp-key-1")},
                {"address": "10.99.0.5", "key_id": 2, "key": secret("ntp-key-2")},
            ],
            "syslog_servers": [{"address": "10.99.0.6", "port": 6514, "transport": "tls"}],
        },
        "snmp": {
            "username": "pexip-snmp",
            "authentication_password": secret("snmp-auth-password"),
            "privacy_password": secret("snmp-priv-password"),
            "community": "pexip-lab",
        },
        "global_settings": {
            "login_banner": "Lab deployment: authorised use only.",
            "ocsp_responder_url": f"http://ocsp.{_DOMAIN}",
        },
        "pki": _lab_ca(lab_dir, Path(vc.ca_file)),
        "ldap": {
            "mode": "sim",
            "server": f"ldap.{_DOMAIN}",
            "base_dn": "dc=lab,dc=example,dc=com",
            "bind_username": "cn=pexip-bind,ou=services,dc=lab,dc=example,dc=com",
            "bind_password": secret("ldap-bind-password"),
            "verify_user": "orchestrator",
            "verify_password": secret("ldap-verify-password"),
            "role_mappings": [
                {
                    "name": f"Lab {role}",
                    "group_dn": f"cn=lab-{role.lower()},ou=groups,dc=lab,dc=example,dc=com",
                    "roles": [role],
                }
                for role in _ROLES
            ],
        },
        "simulation": {"world": str(lab_dir / "world.sqlite")},
        "journal": {"path": str(lab_dir / "journal.sqlite")},
    }
    if slapd_port is not None:
        ldap = {"mode": "real", "server": "127.0.0.1", "port": slapd_port, "transport": "starttls"}
        data["ldap"] = {**ldap, **{k: v for k, v in data["ldap"].items() if k not in ldap}, "ca_file": str(vc.ca_file)}
        data["pexip_api"]["client_cert"] = str(lab_dir / "pki" / "orchestrator-admin.pem")
        data["pexip_api"]["client_key"] = f"file:{lab_dir / 'pki' / 'orchestrator-admin.key'}"
    return data


def _lab_ca(lab_dir: Path, ca_file: Path) -> dict[str, Any]:
    """The lab CA (the one that signed vcsim's and slapd's certificates) as the deployment's CA: a command CA
    (``openssl x509 -req``, the CSR's SANs and usages copied) that signs at once, so the lab runs unattended,
    and ``pki.ca_chain`` is a real file: what the Manager is given to trust and what ``cert import`` checks."""
    return {
        "mode": "command",
        "dn": "O=Lab,C=GB",
        "ca_chain": str(ca_file),
        "inbox": str(lab_dir / "ca" / "inbox"),
        "command": [
            "openssl",
            "x509",
            "-req",
            "-CA",
            str(ca_file),
            "-CAkey",
            str(ca_file.with_suffix(".key")),
            "-copy_extensions",
            "copyall",
            "-days",
            "90",
        ],
    }


def _secret_file(path: Path, value: str | None = None) -> Path:
    if value is not None or not path.is_file():
        write_private(path, (value or secrets.token_urlsafe(18)).encode())
    return path


def write_lab_config(
    lab_dir: Path,
    vc: Vcsim,
    *,
    name: str = "lab",
    iops_capacity: int = 20000,
    slapd_port: int | None = None,
    servers: Mapping[str, Any] | None = None,
) -> Path:
    """``<lab>/orchestrator.toml`` (see :func:`lab_config`), with its secrets and test OVAs, and
    ``<lab>/servers.toml`` for the network simulators.

    The vCenter password is ``vc``'s; every other secret is made once, at random, and kept.

    Args:
        servers: what the running simulators wrote (``servers.json``): the Management API and the
            provisioning interfaces become real, pointed at them. ``None``: simulated.
    """
    lab_dir = Path(lab_dir).resolve()
    secret_dir = lab_dir / "secrets"
    secret_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _secret_file(secret_dir / "vcenter-password", vc.password)
    for s in SECRETS:
        _secret_file(secret_dir / s)
    # AES-256 key of the Conferencing Nodes' bootstrap files: 32 random bytes, base64.
    if not (secret_dir / "pexip-bootstrap-key").is_file():
        _secret_file(secret_dir / "pexip-bootstrap-key", secrets.token_urlsafe(32))
    images = lab_dir / "images"
    management_ova = make_test_ova(images / "pexip-mgmt-test.ova", name="pexip-mgmt", cpus=4, memory_mb=8192)
    conferencing_ova = make_test_ova(images / "pexip-conf-test.ova", name="pexip-conf", cpus=4, memory_mb=4096)
    data = lab_config(
        lab_dir,
        vc,
        management_ova=management_ova,
        conferencing_ova=conferencing_ova,
        name=name,
        iops_capacity=iops_capacity,
        slapd_port=slapd_port,
    )
    # The lab's vCenter is in real mode: the journal needs a signing key outside its directory
    # (orchestrator._trust.key_dir says why), made once and kept.
    from orchestrator._trust import generate_key

    data["journal"]["signing_key"] = f"file:{generate_key(Path(data['journal']['path']))}"
    seen_by_servers = copy.deepcopy(data)
    seen_by_servers["simulation"]["shared"] = True
    (lab_dir / "servers.toml").write_text(_SERVERS_HEADER + tomli_w.dumps(seen_by_servers))
    if servers is not None:
        _real_api(data, servers, secret_dir)
    path = lab_dir / "orchestrator.toml"
    header = _HEADER.format(
        real=(_LDAP_HEADER if slapd_port is not None else "") + (_API_HEADER if servers is not None else "")
    )
    path.write_text(header + tomli_w.dumps(data))
    return path


def repoint_lab_config(path: Path, servers: Mapping[str, Any]) -> Path:
    """The lab's deployment file ``path`` pointed at restarted simulators (ports that moved), the rest kept."""
    text = path.read_text()
    header = "".join(itertools.takewhile(lambda line: line.startswith("#"), text.splitlines(keepends=True)))
    data = tomllib.loads(text)
    _real_api(data, servers, path.parent / "secrets")
    path.write_text(header + "\n" + tomli_w.dumps(data))
    return path


def _real_api(data: dict[str, Any], servers: Mapping[str, Any], secret_dir: Path) -> None:
    """Point the lab's deployment at its running simulators: pexip_api and console real (the console's host key
    pinned), each node's interface pinned."""
    api = servers["pexip_api"]
    manager = data["management"]
    port = api["url"].rsplit(":", 1)[1]
    data["pexip_api"].update(
        mode="real",
        url=f"https://{manager['hostname']}.{manager['domain']}:{port}",  # by name: host headers are validated
        address=api["url"].split("//", 1)[1].rsplit(":", 1)[0],
        ca_file=api["ca_file"],
        client_cert=api["client_cert"],
        client_key=f"file:{api['client_key']}",
    )
    console = servers["console"]
    data["console"] = {
        "mode": "real",
        "address": console["address"],  # before the installation wizard; afterwards the Manager's address
        "port": console["port"],
        "admin_password": f"file:{secret_dir / CONSOLE_PASSWORD}",
        "host_key_fingerprint": console["host_key_fingerprint"],
    }
    for node in data["conferencing"]:
        found = servers["provisioning"][node["name"]]
        node.update(provisioning_url=found["url"], provisioning_thumbprint=found["thumbprint"])
    data["simulation"]["shared"] = True  # the simulators use the world too
