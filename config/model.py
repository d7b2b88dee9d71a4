"""The deployment and the policy as plain, frozen data.

Every layer may import these types. They are built and validated by
:mod:`config.load` from the TOML deployment file and ``secure-mode-policy.toml``;
nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from config.policy import Policy
from config.secrets import Secret

__all__ = [
    "Mode",
    "HostSpec",
    "VCenterSpec",
    "OvaSpec",
    "BiosSpec",
    "NodeSpec",
    "PexipApiSpec",
    "ConsoleSpec",
    "NtpServer",
    "SyslogServer",
    "NetworkSpec",
    "SnmpSpec",
    "GlobalSpec",
    "PkiSpec",
    "RoleMapping",
    "LdapSpec",
    "SimulationSpec",
    "JournalSpec",
    "HttpSpec",
    "DaemonSpec",
    "Policy",
    "Deployment",
    "MANAGEMENT",
    "CONFERENCING",
]

Mode = Literal["real", "sim"]
MANAGEMENT: Literal["management"] = "management"
CONFERENCING: Literal["conferencing"] = "conferencing"


@dataclass(frozen=True)
class HostSpec:
    """An ESXi host that carries Pexip VMs."""

    name: str
    datastore: str
    datastore_iops_capacity: int
    vm_network: str  # the portgroup/switch that carries the VMs' traffic
    management_network: str  # the VMkernel management network: must be apart from vm_network
    max_concurrent: int = 2  # side effects at once on this host


@dataclass(frozen=True)
class VCenterSpec:
    mode: Mode
    url: str
    user: str
    password: Secret | None
    datacenter: str
    folder: str
    hosts: tuple[HostSpec, ...]
    ca_file: str | None = None
    thumbprint: str | None = None  # "sha256:AA:BB:..." pinned leaf certificate
    reserved_vlans: tuple[int, ...] = ()
    name_pattern: str = "*"  # inventory watching: which VMs are ours
    tag: str | None = None


@dataclass(frozen=True)
class OvaSpec:
    management: str  # path or URL of the Management Node OVA
    conferencing: str  # path of the generic Conferencing Node OVA (until the Manager makes one)


@dataclass(frozen=True)
class BiosSpec:
    password: Secret | None
    password_method: Literal["keystrokes", "operator"] = "keystrokes"


@dataclass(frozen=True, slots=True)  # slots: one per node, thousands of them
class NodeSpec:
    """One Pexip node: the Management Node or a Conferencing Node."""

    name: str  # the VM name and the node's name in the journal
    role: Literal["management", "conferencing"]
    hostname: str
    domain: str
    address: str
    netmask: str
    gateway: str
    host: str  # HostSpec.name
    portgroup: str
    vlan: int
    cpus: int
    memory_mb: int
    disk_iops_limit: int
    location: str | None = None  # conferencing nodes: the system location name
    sip_tls_fqdn: str | None = None  # conferencing nodes
    # Conferencing nodes: their provisioning interface (default https://<address>:8443/) and
    # the SHA-256 of its certificate ("sha256:AA:BB:..."), pinned (adapters.provisioning).
    provisioning_url: str | None = None
    provisioning_thumbprint: str | None = None

    @property
    def fqdn(self) -> str:
        return f"{self.hostname}.{self.domain}"


@dataclass(frozen=True)
class PexipApiSpec:
    mode: Mode
    url: str  # https://<management node FQDN>
    admin_user: str
    admin_password: Secret | None
    ca_file: str | None = None
    # "sha256:AA:BB:..." of the Manager's own self-signed certificate, accepted until the deployment's
    # CA-signed one (verified with ca_file) replaces it.
    tls_fingerprint: str | None = None
    # Where the Manager is reached (default: management.address); the URL's host name stays the TLS
    # name and the Host header, which the security wizard's host-header validation wants.
    address: str | None = None
    # The identity the orchestrator presents once client certificates are required.
    client_cert: str | None = None
    client_key: Secret | None = None
    # 32 random bytes (base64 or hex) that encrypt each Conferencing Node's bootstrap file at rest.
    bootstrap_key: Secret | None = None
    # How the Conferencing Nodes' provisioning interfaces are verified when no node pins its
    # certificate: a CA file, or (explicitly) trust on first use, the fingerprint logged.
    provisioning_ca_file: str | None = None
    provisioning_trust_first_use: bool = False
    # No tls_fingerprint: the Manager's first certificate is accepted (explicit), its fingerprint journaled.
    trust_on_first_use: bool = False


@dataclass(frozen=True)
class ConsoleSpec:
    mode: Mode
    port: int = 22
    known_hosts: str | None = None
    # Where the console answers before the installation wizard (the DHCP address); afterwards the node's address.
    address: str | None = None
    # The console/SSH ``admin`` user's password (the wizards' start prompts ask for it too).
    admin_password: Secret | None = None
    # The console's host key, pinned: "SHA256:..." as ``ssh-keygen -lf`` prints it (or known_hosts).
    host_key_fingerprint: str | None = None
    trust_on_first_use: bool = False  # explicit: accept the first key seen, its fingerprint logged


@dataclass(frozen=True)
class NtpServer:
    address: str
    key_id: int
    key: Secret


@dataclass(frozen=True)
class SyslogServer:
    address: str
    port: int = 514
    transport: Literal["udp", "tcp", "tls"] = "tls"


@dataclass(frozen=True)
class NetworkSpec:
    dns_servers: tuple[str, ...]
    ntp_servers: tuple[NtpServer, ...]
    syslog_servers: tuple[SyslogServer, ...]
    locations: tuple[str, ...]


@dataclass(frozen=True)
class SnmpSpec:
    username: str
    authentication_password: Secret
    privacy_password: Secret
    community: str


@dataclass(frozen=True)
class GlobalSpec:
    login_banner: str
    ocsp_responder_url: str
    enable_sip: bool = True
    enable_h323: bool = False
    enable_webrtc: bool = True
    enable_rtmp: bool = False


@dataclass(frozen=True)
class PkiSpec:
    mode: Literal["manual", "command", "sim"]
    ca_chain: str | None  # PEM file of the trusted CA chain to upload
    key_type: str = "RSA2048"
    dn: str = ""  # additional subject fields, "O=...,C=..."
    inbox: str | None = None  # manual mode: where signed certificates may be dropped
    command: tuple[str, ...] = ()  # command mode: the argv that signs a CSR on stdin, PEM on stdout
    command_timeout_s: float = 60.0
    ms_template: bool = False  # the CSR's "Include Microsoft certificate template extension" (an enterprise CA)
    subject: Literal["fqdn", "address"] = "fqdn"  # the CSR's CN: the node's FQDN, or its IP where no DNS is used
    min_valid_days: int = 0  # a signed certificate must stay valid this long from its import


@dataclass(frozen=True)
class RoleMapping:
    name: str
    group_dn: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class LdapSpec:
    mode: Mode
    server: str
    base_dn: str
    bind_username: str
    bind_password: Secret | None
    role_mappings: tuple[RoleMapping, ...]
    ca_file: str | None = None
    port: int = 389  # 636 by default with transport "ldaps"
    user_search_dn: str = ""
    group_search_dn: str = ""
    client_certificate: Literal["CN", "UPN"] = "CN"
    # The LDAP user whose login proves each authentication change before the next one.
    verify_user: str = ""
    verify_password: Secret | None = None
    # How the orchestrator talks to the server: "starttls" (on ldap.port, 389), "ldaps" (TLS from
    # the first byte, 636) or "plain" (no TLS: refused unless the policy's ldap_permit_no_tls).
    transport: Literal["starttls", "ldaps", "plain"] = "starttls"


@dataclass(frozen=True)
class SimulationSpec:
    world: str = "orchestrator.world.sqlite"
    latency: float = 0.0
    faults: str = ""
    # The world file is used by another process too (the lab's network simulators): no exclusive lock.
    shared: bool = False


@dataclass(frozen=True)
class JournalSpec:
    path: str = "orchestrator.journal.sqlite"
    lease_timeout_s: float = 60.0
    # The Ed25519 key that signs checkpoints: a secret reference kept away from the journal's
    # directory (required when any system is real; a simulation generates its own).
    signing_key: Secret | None = None
    # Where checkpoints are witnessed: "real" sends them to network.syslog_servers, "sim" to the
    # simulated world's syslog, "auto": real unless a system is simulated.
    syslog: Literal["auto", "real", "sim"] = "auto"
    # A group that may read the journal, its checkpoints and its exports (created 0640 and owned by
    # it); empty: they stay private to the user that runs the orchestrator (0600).
    group: str = ""


@dataclass(frozen=True)
class HttpSpec:
    """``orchestrator serve``: where the HTTP API listens, the approvals' bearer token, optional TLS."""

    listen: str = "127.0.0.1:8480"
    token: Secret | None = None  # None: the API is read-only (every approval refused)
    tls_cert: str | None = None
    tls_key: str | None = None


@dataclass(frozen=True)
class DaemonSpec:
    """``orchestrator daemon``: how often every node is looked at again, and a waiting node."""

    resync_s: float = 300.0  # every node re-queued (drift: the resync_node hook)
    gate_recheck_s: float = 5.0  # a node waiting on a gate (or in maintenance) looked at again


@dataclass(frozen=True)
class Deployment:
    """A whole declared deployment, validated."""

    name: str
    vcenter: VCenterSpec
    ova: OvaSpec
    bios: BiosSpec
    management: NodeSpec
    conferencing: tuple[NodeSpec, ...]
    pexip_api: PexipApiSpec
    console: ConsoleSpec
    network: NetworkSpec
    snmp: SnmpSpec
    global_settings: GlobalSpec
    pki: PkiSpec
    ldap: LdapSpec
    policy: Policy
    simulation: SimulationSpec = field(default_factory=SimulationSpec)
    journal: JournalSpec = field(default_factory=JournalSpec)
    http: HttpSpec = field(default_factory=HttpSpec)
    daemon: DaemonSpec = field(default_factory=DaemonSpec)
    # "contingency": the guide's fallback system (the policy's [contingency]: LDAP and local authentication,
    # no client certificate, no licensing, every VM powered off once built); "primary": the secure deployment.
    profile: Literal["primary", "contingency"] = "primary"
    source: str = ""  # the file it came from, for messages
    source_sha256: str = ""  # of the file's bytes as read: which configuration a run applied
    policy_path: str = ""  # the policy file used (the packaged one unless [deployment] policy names another)
    policy_sha256: str = ""
    # (field, the guide's value, the value used, the guide's words): the recommended values changed
    policy_deviations: tuple[tuple[str, object, object, str], ...] = ()

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return (self.management, *self.conferencing)

    @cached_property
    def _nodes_by_name(self) -> dict[str, NodeSpec]:
        # cached_property writes the instance __dict__ directly, which a frozen dataclass allows.
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> NodeSpec:
        return self._nodes_by_name[name]

    def subject_name(self, node: NodeSpec) -> str:
        """A node's CSR subject CN, the name its certificate must be valid for and the CA's file name
        (``<subject-name>.csr``, as Pexip's generator names it): the FQDN, or the IP address where the
        deployment uses no DNS (``pki.subject = "address"``, as the guide allows)."""
        return node.address if self.pki.subject == "address" else node.fqdn

    def host(self, name: str) -> HostSpec:
        for h in self.vcenter.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def secrets(self) -> list[Secret]:
        """Every secret reference in the deployment, for redaction and preflight."""
        found: list[Secret] = []

        def walk(obj: Any) -> None:
            if isinstance(obj, Secret):
                found.append(obj)
            elif isinstance(obj, (list, tuple)):
                for x in obj:
                    walk(x)
            elif hasattr(obj, "__dataclass_fields__"):
                for name in obj.__dataclass_fields__:
                    walk(getattr(obj, name))

        walk(self)
        return found
