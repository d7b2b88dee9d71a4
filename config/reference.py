"""The reference of the deployment file: one table of every field, the source of the generated docs.

``orchestrator config reference`` prints it, ``orchestrator config schema`` turns it into a JSON
Schema, and ``docs/configuration.md`` is generated from it. A test parses documents with the
real parser, records every key it reads (with its kind, required flag and default) and compares
them with this table, so the reference cannot drift from the parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Field", "FIELDS", "KINDS", "markdown", "json_schema"]

# The parser's reader method (config._reader.Table) -> the type as the reference shows it.
KINDS = {
    "text": "string",
    "integer": "integer",
    "number": "number",
    "flag": "boolean",
    "array:str": "array of strings",
    "array:int": "array of integers",
    "file_path": "path (relative: to the file's directory)",
    "secret": "secret reference: env:NAME or file:PATH",
    "table": "table",
    "tables": "array of tables",
    "get:dict": "table",
}
MODES = ("real", "sim")


@dataclass(frozen=True)
class Field:
    """One key: ``section`` is its table's dotted path (``[]``: each element of an array of tables)."""

    section: str
    name: str
    kind: str
    required: bool
    default: Any
    meaning: str
    allowed: tuple[Any, ...] = ()

    @property
    def secret(self) -> bool:
        return self.kind == "secret"

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name


def _f(
    section: str, name: str, kind: str, meaning: str, *, req: bool = True, default: Any = None, allowed: Any = ()
) -> Field:
    return Field(section, name, kind, req, default, meaning, tuple(allowed))


def _node(section: str, conferencing: bool) -> list[Field]:
    fields = [
        _f(section, "name", "text", "the VM's name in vCenter and the node's name in the journal"),
        _f(section, "hostname", "text", "the node's host name (without the domain)"),
        _f(section, "domain", "text", "the node's DNS domain"),
        _f(section, "address", "text", "the node's IPv4 address"),
        _f(section, "netmask", "text", "the node's IPv4 netmask"),
        _f(section, "gateway", "text", "the node's default gateway, inside its subnet"),
        _f(section, "host", "text", "the ESXi host it runs on: one of vcenter.hosts[].name"),
        _f(section, "portgroup", "text", "the vSphere port group of its network"),
        _f(section, "vlan", "integer", "its VLAN ID (the guide forbids 1 and vcenter.reserved_vlans)"),
        _f(section, "cpus", "integer", "vCPUs of the VM"),
        _f(section, "memory_mb", "integer", "memory of the VM, MB"),
        _f(section, "disk_iops_limit", "integer", "the VM disk's IOPS limit (sums checked against the datastore)"),
    ]
    if conferencing:
        fields += [
            _f(section, "location", "text", "its system location: one of network.locations"),
            _f(section, "sip_tls_fqdn", "text", "the FQDN its SIP TLS certificate names"),
            _f(
                section,
                "provisioning_url",
                "text",
                "its provisioning interface (default https://<address>:8443/)",
                req=False,
            ),
            _f(
                section,
                "provisioning_thumbprint",
                "text",
                "SHA-256 of its provisioning certificate, if pinned",
                req=False,
            ),
        ]
    return fields


FIELDS: tuple[Field, ...] = (
    _f("", "deployment", "table", "the deployment's identity"),
    _f("deployment", "name", "text", "the deployment's name; the journal records it and refuses another's"),
    _f("deployment", "policy", "file_path", "a secure-mode policy file (default: the packaged one)", req=False),
    _f(
        "deployment",
        "profile",
        "text",
        "primary: the secure deployment; contingency: the guide's fallback (LDAP and local login, no client "
        "certificate, no licensing, every VM powered off once built)",
        req=False,
        default="primary",
        allowed=("primary", "contingency"),
    ),
    _f(
        "",
        "policy",
        "get:dict",
        "overrides of the policy's customizable values (never below the guide's floor)",
        req=False,
    ),
    _f("", "management", "table", "the Management Node"),
    *_node("management", False),
    _f("", "conferencing", "tables", "the Conferencing Nodes, one [[conferencing]] each"),
    *_node("conferencing[]", True),
    _f("", "vcenter", "table", "the vCenter the nodes are deployed with"),
    _f("vcenter", "mode", "text", "real: talk to vCenter; sim: the simulated world", allowed=MODES),
    _f("vcenter", "url", "text", "vCenter's SDK URL (https)"),
    _f("vcenter", "user", "text", "the vCenter account"),
    _f("vcenter", "password", "secret", "its password (required in real mode)", req=False),
    _f("vcenter", "datacenter", "text", "the datacenter to deploy into"),
    _f("vcenter", "folder", "text", "the VM folder to deploy into"),
    _f(
        "vcenter",
        "ca_file",
        "file_path",
        "the CA certificate that signed vCenter's (real mode: this or thumbprint)",
        req=False,
    ),
    _f("vcenter", "thumbprint", "text", "SHA-256 thumbprint of vCenter's certificate, if pinned", req=False),
    _f("vcenter", "reserved_vlans", "array:int", "VLAN IDs no node may use", req=False),
    _f("vcenter", "name_pattern", "text", "VMs the orchestrator may touch (glob)", req=False, default="*"),
    _f("vcenter", "tag", "text", "a vSphere tag put on every VM it creates", req=False),
    _f("vcenter", "hosts", "tables", "the ESXi hosts, one [[vcenter.hosts]] each"),
    _f("vcenter.hosts[]", "name", "text", "the ESXi host's name in vCenter"),
    _f("vcenter.hosts[]", "datastore", "text", "the datastore for its VMs"),
    _f("vcenter.hosts[]", "datastore_iops_capacity", "integer", "the datastore's IOPS, the bound of the nodes' limits"),
    _f("vcenter.hosts[]", "vm_network", "text", "the host's VM network (vSwitch)"),
    _f("vcenter.hosts[]", "management_network", "text", "the host's management network"),
    _f(
        "vcenter.hosts[]",
        "max_concurrent",
        "integer",
        "deployments at once on this host (default: the policy's)",
        req=False,
        default=2,
    ),
    _f("", "ova", "table", "the Pexip Infinity OVA files"),
    _f("ova", "management", "file_path", "the Management Node's OVA"),
    _f("ova", "conferencing", "file_path", "the Conferencing Node's OVA"),
    _f("", "bios", "table", "the VMs' BIOS password (the guide's section 2)"),
    _f("bios", "password", "secret", "the BIOS password to set", req=False),
    _f(
        "bios",
        "password_method",
        "text",
        "keystrokes: typed on the console; operator: an operator sets it",
        req=False,
        default="keystrokes",
        allowed=("keystrokes", "operator"),
    ),
    _f("", "pexip_api", "table", "the Management Node's management API"),
    _f("pexip_api", "mode", "text", "real: the HTTPS API; sim: the simulated world", allowed=MODES),
    _f("pexip_api", "url", "text", "the Management Node's URL (https://<its FQDN>: TLS name and Host header)"),
    _f(
        "pexip_api",
        "address",
        "text",
        "the IPv4 address the Manager is reached at (default: management.address)",
        req=False,
    ),
    _f("pexip_api", "admin_user", "text", "the administrator account"),
    _f("pexip_api", "admin_password", "secret", "its password", req=False),
    _f("pexip_api", "ca_file", "file_path", "the CA chain of the Management Node's certificate", req=False),
    _f(
        "pexip_api",
        "tls_fingerprint",
        "text",
        "sha256:AA:BB:... of the Manager's self-signed certificate, trusted until a CA-signed one replaces it",
        req=False,
    ),
    _f("pexip_api", "client_cert", "file_path", "the orchestrator's client certificate", req=False),
    _f("pexip_api", "client_key", "secret", "its private key", req=False),
    _f("pexip_api", "bootstrap_key", "secret", "AES key of the Conferencing Nodes' bootstrap files", req=False),
    _f("pexip_api", "provisioning_ca_file", "file_path", "the CA of the nodes' provisioning certificates", req=False),
    _f(
        "pexip_api",
        "provisioning_trust_first_use",
        "flag",
        "trust a node's provisioning certificate on first use",
        req=False,
        default=False,
    ),
    _f(
        "pexip_api",
        "trust_on_first_use",
        "flag",
        "accept the Manager's first certificate when tls_fingerprint is not set (journaled); weaker, explicit",
        req=False,
        default=False,
    ),
    _f("", "console", "table", "the nodes' SSH console"),
    _f("console", "mode", "text", "real: SSH; sim: the simulated world", allowed=MODES),
    _f("console", "port", "integer", "the SSH port", req=False, default=22),
    _f("console", "known_hosts", "file_path", "an OpenSSH known_hosts file with the nodes' keys", req=False),
    _f(
        "console",
        "address",
        "text",
        "where the console answers before the installation wizard (e.g. DHCP); afterwards the node's address",
        req=False,
    ),
    _f("console", "admin_password", "secret", "the console/SSH admin user's password (real mode)", req=False),
    _f(
        "console",
        "host_key_fingerprint",
        "text",
        'the console\'s SSH host key, pinned: "SHA256:..." as ssh-keygen -lf prints it',
        req=False,
    ),
    _f(
        "console",
        "trust_on_first_use",
        "flag",
        "accept the first host key seen (journaled) when none is pinned; weaker, explicit",
        req=False,
        default=False,
    ),
    _f("", "network", "table", "the site's network services"),
    _f("network", "dns_servers", "array:str", "DNS servers"),
    _f("network", "locations", "array:str", "the system locations the Conferencing Nodes are in"),
    _f("network", "ntp_servers", "tables", "NTP servers, with keys (the guide requires authenticated NTP)"),
    _f("network.ntp_servers[]", "address", "text", "the NTP server's address"),
    _f("network.ntp_servers[]", "key_id", "integer", "its key's ID"),
    _f("network.ntp_servers[]", "key", "secret", "its key", req=False),
    _f("network", "syslog_servers", "tables", "remote syslog servers"),
    _f("network.syslog_servers[]", "address", "text", "the syslog server's address"),
    _f("network.syslog_servers[]", "port", "integer", "its port", req=False, default=514),
    _f(
        "network.syslog_servers[]",
        "transport",
        "text",
        "its transport",
        req=False,
        default="tls",
        allowed=("udp", "tcp", "tls"),
    ),
    _f("", "snmp", "table", "SNMPv3 (the guide's settings)"),
    _f("snmp", "username", "text", "the SNMPv3 user"),
    _f("snmp", "authentication_password", "secret", "its authentication password"),
    _f("snmp", "privacy_password", "secret", "its privacy password"),
    _f("snmp", "community", "text", "the SNMP community name"),
    _f("", "global_settings", "table", "the platform's global settings"),
    _f("global_settings", "login_banner", "text", "the banner shown before login"),
    _f("global_settings", "ocsp_responder_url", "text", "the OCSP responder (http or https URL)"),
    _f("global_settings", "enable_sip", "flag", "SIP signalling", req=False, default=True),
    _f("global_settings", "enable_h323", "flag", "H.323 signalling", req=False, default=False),
    _f("global_settings", "enable_webrtc", "flag", "WebRTC", req=False, default=True),
    _f("global_settings", "enable_rtmp", "flag", "RTMP streaming", req=False, default=False),
    _f("", "pki", "table", "the certificates the nodes get from the site's CA"),
    _f(
        "pki",
        "mode",
        "text",
        "manual: an operator brings the signed certificate; command: a command signs; sim",
        allowed=("manual", "command", "sim"),
    ),
    _f("pki", "ca_chain", "file_path", "the trusted CA chain the guide requires uploading", req=False),
    _f(
        "pki",
        "key_type",
        "text",
        "the CSRs' key type",
        req=False,
        default="RSA2048",
        allowed=("RSA2048", "RSA4096", "ECDSAP256"),
    ),
    _f("pki", "dn", "text", "the CSRs' subject beyond the CN (e.g. O=Example,C=GB)", req=False, default=""),
    _f("pki", "inbox", "file_path", "manual mode: a directory signed certificates are dropped into", req=False),
    _f("pki", "command", "array:str", "command mode: the signing command and its arguments", req=False),
    _f("pki", "command_timeout_s", "number", "command mode: seconds the command may take", req=False, default=60.0),
    _f("pki", "ms_template", "flag", "add the Microsoft certificate template extension", req=False, default=False),
    _f("pki", "subject", "text", "what the CN names", req=False, default="fqdn"),
    _f("pki", "min_valid_days", "integer", "refuse a certificate valid for fewer days", req=False, default=0),
    _f("", "ldap", "table", "the directory administrators log in with"),
    _f("ldap", "mode", "text", "real: the LDAP server; sim: the simulated world", allowed=MODES),
    _f("ldap", "server", "text", "the LDAP server's name"),
    _f("ldap", "base_dn", "text", "the search base"),
    _f("ldap", "bind_username", "text", "the bind account's DN"),
    _f("ldap", "bind_password", "secret", "its password", req=False),
    _f("ldap", "ca_file", "file_path", "the CA certificate that signed the LDAP server's", req=False),
    _f("ldap", "port", "integer", "the LDAP port (636 by default with transport ldaps)", req=False, default=389),
    _f(
        "ldap",
        "transport",
        "text",
        "starttls, ldaps (TLS from the first byte) or plain (only where the policy permits no TLS)",
        req=False,
        default="starttls",
        allowed=("starttls", "ldaps", "plain"),
    ),
    _f("ldap", "user_search_dn", "text", "where users are searched (below base_dn)", req=False, default=""),
    _f("ldap", "group_search_dn", "text", "where groups are searched (below base_dn)", req=False, default=""),
    _f(
        "ldap",
        "client_certificate",
        "text",
        "the client certificate field matched to the user",
        req=False,
        default="CN",
    ),
    _f("ldap", "verify_user", "text", "a directory user the orchestrator logs in as to verify", req=False, default=""),
    _f("ldap", "verify_password", "secret", "its password", req=False),
    _f("ldap", "role_mappings", "tables", "directory groups to Pexip roles, one [[ldap.role_mappings]] each"),
    _f("ldap.role_mappings[]", "name", "text", "the mapping's name"),
    _f("ldap.role_mappings[]", "group_dn", "text", "the directory group's DN"),
    _f("ldap.role_mappings[]", "roles", "array:str", "the Pexip roles it grants"),
    _f("", "simulation", "table", "the simulated world (when any mode is sim)", req=False),
    _f("simulation", "world", "file_path", "the world's SQLite file", req=False, default="orchestrator.world.sqlite"),
    _f("simulation", "latency", "number", "seconds per simulated side effect", req=False, default=0.0),
    _f("simulation", "faults", "text", "faults to inject (simulate --faults syntax)", req=False, default=""),
    _f(
        "simulation",
        "shared",
        "flag",
        "the world file is shared with the lab's network simulators (another process)",
        req=False,
        default=False,
    ),
    _f("", "journal", "table", "the journal, the audit record", req=False),
    _f("journal", "path", "file_path", "the journal's SQLite file", req=False, default="orchestrator.journal.sqlite"),
    _f(
        "journal",
        "lease_timeout_s",
        "number",
        "seconds before a dead process's node lease expires",
        req=False,
        default=60.0,
    ),
    _f(
        "journal",
        "signing_key",
        "secret",
        "the key that signs its checkpoints (real mode: required, kept apart)",
        req=False,
    ),
    _f("journal", "syslog", "text", "where checkpoints are also sent", req=False, default="auto"),
    _f("journal", "group", "text", "the Unix group that may read the journal", req=False, default=""),
    _f("", "http", "table", "`orchestrator serve`: the HTTP API and status page", req=False),
    _f("http", "listen", "text", "HOST:PORT the HTTP API listens on", req=False, default="127.0.0.1:8480"),
    _f("http", "token", "secret", "the bearer token approvals need (none: the API is read-only)", req=False),
    _f("http", "tls_cert", "file_path", "the HTTPS certificate (PEM; with tls_key)", req=False),
    _f("http", "tls_key", "file_path", "the HTTPS private key (PEM; with tls_cert)", req=False),
    _f("", "daemon", "table", "`orchestrator daemon`: the reconciler's periods", req=False),
    _f(
        "daemon",
        "resync_s",
        "number",
        "seconds between two looks at every node, each re-observed for drift (> 0)",
        req=False,
        default=300.0,
    ),
    _f(
        "daemon",
        "gate_recheck_s",
        "number",
        "seconds between two looks at a node waiting on a gate or in maintenance (> 0)",
        req=False,
        default=5.0,
    ),
)


def markdown() -> str:
    """docs/configuration.md: every field, grouped by section."""
    lines = [
        "# The deployment file (orchestrator.toml)",
        "",
        "Generated from `config/reference.py` by `orchestrator config reference --markdown`; do not edit.",
        "A starter file: `orchestrator init --sim` (runs at once) or `orchestrator init` (a real site).",
        "",
        "| key | type | required | default | allowed | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for f in FIELDS:
        default = "" if f.default is None else f"`{f.default!r}`"
        allowed = ", ".join(f"`{a}`" for a in f.allowed)
        lines.append(
            f"| `{f.key}` | {KINDS[f.kind]} | {'yes' if f.required else 'no'} | {default} | {allowed} | {f.meaning} |"
        )
    return "\n".join(lines) + "\n"


def _schema(f: Field) -> dict[str, Any]:
    base: dict[str, Any] = {"description": f.meaning}
    kind = f.kind
    if kind in ("text", "file_path"):
        base["type"] = "string"
    elif kind == "secret":
        base |= {"type": "string", "pattern": "^(env|file):.+"}
    elif kind == "integer":
        base["type"] = "integer"
    elif kind == "number":
        base["type"] = "number"
    elif kind == "flag":
        base["type"] = "boolean"
    elif kind.startswith("array:"):
        base |= {"type": "array", "items": {"type": "string" if kind.endswith("str") else "integer"}}
    elif kind == "get:dict":
        base["type"] = "object"
    if f.allowed:
        base["enum"] = list(f.allowed)
    if f.default is not None:
        base["default"] = f.default
    return base


def _object(section: str) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in FIELDS:
        if f.section != section:
            continue
        if f.kind == "table":
            props[f.name] = _object(f.key) | {"description": f.meaning}
        elif f.kind == "tables":
            props[f.name] = {"type": "array", "description": f.meaning, "items": _object(f.key + "[]")}
        else:
            props[f.name] = _schema(f)
        if f.required:
            required.append(f.name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the deployment file's structure (not the rules about values)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "orchestrator.toml",
        **_object(""),
    }
