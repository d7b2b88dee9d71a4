"""The deployment that ``orchestrator simulate`` rehearses: every system simulated.

Built directly as dataclasses (no TOML round trip) because it must be quick for 10,000
nodes. Its secrets are files in ``<workdir>/secrets/`` made once and reused, so a killed
and resumed simulation sees the same values.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import secrets
from pathlib import Path

from config._policy import POLICY_PATH, read_policy
from config.errors import ConfigError
from config.model import (
    CONFERENCING,
    MANAGEMENT,
    BiosSpec,
    ConsoleSpec,
    Deployment,
    GlobalSpec,
    HostSpec,
    JournalSpec,
    LdapSpec,
    NetworkSpec,
    NodeSpec,
    NtpServer,
    OvaSpec,
    PexipApiSpec,
    PkiSpec,
    RoleMapping,
    SimulationSpec,
    SnmpSpec,
    SyslogServer,
    VCenterSpec,
)
from config.secrets import Secret

__all__ = ["simulated_deployment", "MAX_SIMULATED_NODES", "NODES_PER_HOST"]

NODES_PER_HOST = 50
MAX_SIMULATED_NODES = 100_000  # the 10.16.0.0/12 plan below has room for ~1M; this is a sanity bound
NODE_IOPS = 1000
DOMAIN = "sim.example.com"
VLAN = 100
LOCATIONS = ("sim-east", "sim-west")
# One flat /12 for the whole simulated site: data only, no packet is ever sent.
_NETWORK = ipaddress.IPv4Network("10.16.0.0/12")
_GATEWAY = _NETWORK.network_address + 1
_FIRST_NODE = int(_NETWORK.network_address) + 256  # .0.x is for the gateway and services

_SECRET_NAMES = (
    "vcenter-password",
    "bios-password",
    "pexip-admin-password",
    "pexip-client-key",
    "ntp-key-1",
    "ntp-key-2",
    "snmp-auth-password",
    "snmp-priv-password",
    "ldap-bind-password",
    "ldap-verify-password",
    "pexip-bootstrap-key",  # 32 random bytes, base64: encrypts the Conferencing Nodes' bootstrap files
)


def _secret_files(workdir: Path) -> dict[str, Secret]:
    """Create each missing secret file (0600, random) once; keep those already there."""
    folder = workdir / "secrets"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    refs = {}
    for name in _SECRET_NAMES:
        path = folder / name
        try:
            # O_EXCL: two simulations starting at once cannot overwrite each other's value.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                # The bootstrap key: 32 random bytes (AES-256), base64; every other secret a random password.
                f.write(secrets.token_urlsafe(32 if name == "pexip-bootstrap-key" else 24))
        refs[name] = Secret(f"file:{path}")
    return refs


def simulated_deployment(nodes: int, workdir: Path, *, latency: float = 0.0, faults: str = "") -> Deployment:
    """A whole simulated deployment: 1 management node and ``nodes - 1`` conferencing nodes.

    Every system is in mode ``"sim"``; nodes are spread over ``ceil(nodes / 50)`` simulated
    ESXi hosts (``esxi-01``...), all on VLAN 100, with two DNS, two keyed NTP servers, one
    TLS syslog server, SNMPv3 and LDAP role mappings for every role. It passes
    :func:`config.load.validate`.

    Args:
        nodes: how many nodes in all, 1..100000.
        workdir: where the simulation keeps its files; secrets go to ``workdir/"secrets"``.
        latency: seconds added to each simulated call (>= 0).
        faults: the fault specification handed to the simulated world as it is.

    Raises:
        ConfigError: ``nodes`` or ``latency`` out of range.

    Example::

        deployment = simulated_deployment(200, Path(".sim"), latency=0.01)
    """
    problems = []
    if not 1 <= nodes <= MAX_SIMULATED_NODES:
        problems.append(("nodes", f"out of range (got {nodes}); simulate 1..{MAX_SIMULATED_NODES} nodes"))
    if latency < 0:
        problems.append(("latency", f"must be >= 0 (got {latency}); seconds added to each simulated call"))
    if problems:
        raise ConfigError(problems)
    policy, _ = read_policy(None, None)
    assert policy is not None, "the packaged secure-mode-policy.toml is invalid"
    workdir = Path(workdir).resolve()
    secret = _secret_files(workdir)

    host_count = math.ceil(nodes / NODES_PER_HOST)
    hosts = tuple(
        HostSpec(
            name=f"esxi-{i:02d}",
            datastore=f"datastore-{i:02d}",
            datastore_iops_capacity=NODES_PER_HOST * NODE_IOPS,
            vm_network="VM Network",
            management_network="Management Network",
            max_concurrent=policy.concurrency.per_host,
        )
        for i in range(1, host_count + 1)
    )
    netmask, gateway = str(_NETWORK.netmask), str(_GATEWAY)
    portgroup = f"Pexip-VLAN{VLAN}"

    def node(i: int) -> NodeSpec:
        conferencing = i > 0
        return NodeSpec(
            name=f"pexip-conf-{i:05d}" if conferencing else "pexip-mgr",
            role=CONFERENCING if conferencing else MANAGEMENT,
            hostname=f"conf{i:05d}" if conferencing else "pexmgr",
            domain=DOMAIN,
            address=str(ipaddress.IPv4Address(_FIRST_NODE + i)),
            netmask=netmask,
            gateway=gateway,
            host=hosts[i // NODES_PER_HOST].name,
            portgroup=portgroup,
            vlan=VLAN,
            cpus=4,
            memory_mb=4096 if conferencing else 8192,
            disk_iops_limit=NODE_IOPS,
            location=LOCATIONS[i % len(LOCATIONS)] if conferencing else None,
            sip_tls_fqdn=f"conf{i:05d}.{DOMAIN}" if conferencing else None,
        )

    services = _NETWORK.network_address
    return Deployment(
        name="simulation",
        vcenter=VCenterSpec(
            mode="sim",
            url=f"https://vcenter.{DOMAIN}/sdk",
            user="administrator@vsphere.local",
            password=secret["vcenter-password"],
            datacenter="DC0",
            folder="pexip",
            hosts=hosts,
            reserved_vlans=(1, 1002, 1003, 1004, 1005),
            name_pattern="pexip-*",
        ),
        ova=OvaSpec(
            management=str(workdir / "Pexip_Infinity_pxMgr.ova"),
            conferencing=str(workdir / "Pexip_Infinity_ConfNode.ova"),
        ),
        bios=BiosSpec(password=secret["bios-password"], password_method="keystrokes"),
        management=node(0),
        conferencing=tuple(node(i) for i in range(1, nodes)),
        pexip_api=PexipApiSpec(
            mode="sim",
            url=f"https://pexmgr.{DOMAIN}",
            admin_user="admin",
            admin_password=secret["pexip-admin-password"],
            client_cert=str(workdir / "orchestrator-admin.pem"),
            client_key=secret["pexip-client-key"],
            bootstrap_key=secret["pexip-bootstrap-key"],
        ),
        console=ConsoleSpec(mode="sim"),
        network=NetworkSpec(
            dns_servers=(str(services + 2), str(services + 3)),
            ntp_servers=(
                NtpServer(address=str(services + 4), key_id=1, key=secret["ntp-key-1"]),
                NtpServer(address=str(services + 5), key_id=2, key=secret["ntp-key-2"]),
            ),
            syslog_servers=(SyslogServer(address=str(services + 6), port=6514, transport="tls"),),
            locations=LOCATIONS,
        ),
        snmp=SnmpSpec(
            username="pexip-snmp",
            authentication_password=secret["snmp-auth-password"],
            privacy_password=secret["snmp-priv-password"],
            community="pexip-sim",
        ),
        global_settings=GlobalSpec(
            login_banner="Simulated deployment: authorised use only.", ocsp_responder_url=f"http://ocsp.{DOMAIN}"
        ),
        pki=PkiSpec(
            mode="sim",
            ca_chain=None,
            dn="O=Simulation,C=GB",
            # ECDSA P-256 (a key type Pexip's CSR generator offers): an RSA 2048 key costs ~33 ms
            # of CPU under the GIL, 33 s for a 1000-node rehearsal; every CSR still has its own key.
            key_type="ECDSAP256",
        ),
        ldap=LdapSpec(
            mode="sim",
            server=f"ldap.{DOMAIN}",
            base_dn="dc=sim,dc=example,dc=com",
            bind_username="cn=pexip-bind,ou=services,dc=sim,dc=example,dc=com",
            bind_password=secret["ldap-bind-password"],
            role_mappings=tuple(
                RoleMapping(
                    name=f"Pexip {role}",
                    group_dn=f"cn=pexip-{role.lower()},ou=groups,dc=sim,dc=example,dc=com",
                    roles=(role,),
                )
                for role in policy.roles.all_roles
            ),
            user_search_dn="ou=people",
            group_search_dn="ou=groups",
            client_certificate=policy.authentication.client_certificate,
            verify_user="orchestrator",
            verify_password=secret["ldap-verify-password"],
        ),
        policy=policy,
        simulation=SimulationSpec(
            world=str(workdir / "orchestrator.world.sqlite"), latency=float(latency), faults=faults
        ),
        journal=JournalSpec(path=str(workdir / "orchestrator.journal.sqlite")),
        source="simulated",
        policy_path=str(POLICY_PATH),
        policy_sha256=hashlib.sha256(POLICY_PATH.read_bytes()).hexdigest(),
    )
