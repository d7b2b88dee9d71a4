"""Semantic checks of a whole deployment: the guide's rules and consistency between sections.

:func:`validate` runs on a :class:`~config.model.Deployment` however it was made (loaded
from TOML or built by :func:`config.load.simulated_deployment`), so both pass the same
rules. A field left ``None`` by the reader (already reported as missing or mistyped) is
skipped here, so one mistake gives one problem.

Every message reads "<problem> (got <value>); <what is allowed / the fix>".
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from config._checks import Check, ipv4, is_host
from config._node_checks import CPU_RANGE, MEMORY_MB_RANGE, NodeContext, check_across_nodes, check_node
from config._peer_checks import check_console, check_provisioning
from config._reader import Problems, shown
from config.model import Deployment, VCenterSpec
from config.rules import (
    csr_key_type_problem,
    distinct_ntp_servers,
    distinct_servers,
    lease_timeout_problem,
    ntp_key_problem,
    snmp_community_problem,
    too_few_servers,
)

__all__ = ["validate", "MODES", "CPU_RANGE", "MEMORY_MB_RANGE"]

MODES = ("real", "sim")
PKI_MODES = ("manual", "command", "sim")
BIOS_METHODS = ("keystrokes", "operator")
SYSLOG_TRANSPORTS = ("udp", "tcp", "tls")
LDAP_TRANSPORTS = ("starttls", "ldaps", "plain")
PROFILES = ("primary", "contingency")  # [deployment] profile: the secure deployment, or the guide's fallback
CLIENT_CERTIFICATE = ("CN", "UPN")  # authentication.client_certificate "Required" choices
DN_KEYS = ("O", "OU", "L", "ST", "C")  # the CSR's "Additional subject fields"

_NAME = re.compile(r"[a-z0-9-]{1,40}\Z")


# --- sections ----------------------------------------------------------------------------


def _vcenter(v: VCenterSpec, c: Check) -> None:
    c.choice(v.mode, MODES, "vcenter.mode")
    c.url(v.url, v.mode, "vcenter.url")
    c.text(v.user, "vcenter.user", "a user name")
    c.text(v.datacenter, "vcenter.datacenter", "a datacenter name")
    c.text(v.folder, "vcenter.folder", "a VM folder name")
    if v.mode == "real":
        c.required(v.password, "vcenter.password", "required when mode is 'real': add it as env:NAME or file:PATH")
        c.need(
            bool(v.ca_file or v.thumbprint),
            "vcenter.ca_file",
            'a real vCenter needs ca_file or thumbprint (got neither); add ca_file = "<CA PEM>" '
            'or thumbprint = "sha256:AA:BB:..." so its certificate is verified',
        )
    c.sha256_pin(v.thumbprint, "vcenter.thumbprint")
    for i, vlan in enumerate(v.reserved_vlans or ()):
        c.need(0 <= vlan <= 4095, f"vcenter.reserved_vlans[{i}]", f"not a VLAN ID (got {vlan}); use 0..4095")
    hosts = v.hosts if v.hosts is not None else ()
    c.need(len(hosts) > 0, "vcenter.hosts", "no ESXi hosts (got 0); add at least one [[vcenter.hosts]] section")
    seen: dict[str, int] = {}
    for i, h in enumerate(hosts):
        path = f"vcenter.hosts[{i}]"
        c.text(h.name, f"{path}.name", "a host name")
        c.text(h.datastore, f"{path}.datastore", "a datastore name")
        if isinstance(h.name, str):
            if h.name in seen:
                c.add(
                    f"{path}.name",
                    f"duplicate host (got {h.name!r}, also vcenter.hosts[{seen[h.name]}]); list each host once",
                )
            seen.setdefault(h.name, i)
        if isinstance(h.datastore_iops_capacity, int):
            c.need(
                h.datastore_iops_capacity > 0,
                f"{path}.datastore_iops_capacity",
                f"must be > 0 (got {h.datastore_iops_capacity}); give the datastore's IOPS capacity",
            )
        if isinstance(h.max_concurrent, int):
            c.need(
                h.max_concurrent >= 1, f"{path}.max_concurrent", f"must be >= 1 (got {h.max_concurrent}); set 1 or more"
            )
        if isinstance(h.vm_network, str) and isinstance(h.management_network, str):
            c.need(
                h.vm_network != h.management_network,
                f"{path}.management_network",
                f"same network as vm_network (got {h.management_network!r}); the guide wants ESXi management "
                "on a physical network apart from the VMs' network: name two different networks",
            )


def _network(d: Deployment, c: Check) -> None:
    n, rules = d.network, d.policy.network_services
    if n is None:
        return
    # The same server twice, or two NTP servers sharing one key id, is one server for the guide's minimums.
    ntp_pairs = [(s.address, s.key_id) for s in n.ntp_servers or () if isinstance(s.address, str)]
    counts: tuple[tuple[Literal["dns", "ntp", "syslog"], int | None], ...] = (
        ("dns", distinct_servers(n.dns_servers) if n.dns_servers is not None else None),
        ("ntp", distinct_ntp_servers(ntp_pairs) if n.ntp_servers is not None else None),
        (
            "syslog",
            distinct_servers(s.address for s in n.syslog_servers if isinstance(s.address, str))
            if n.syslog_servers is not None
            else None,
        ),
    )
    for kind, count in counts:
        if count is not None and (message := too_few_servers(kind, count, rules)) is not None:
            c.add(f"network.{kind}_servers", message)
    dns = list(n.dns_servers or ())
    for i, address in enumerate(dns):
        if ipv4(address) is None:
            c.add(
                f"network.dns_servers[{i}]",
                f"not an IPv4 address (got {shown(address)}); the API's dns_server.address takes an IP address only",
            )
        elif address in dns[:i]:
            c.add(f"network.dns_servers[{i}]", f"listed twice (got {address!r}); list each server once")
    seen: set[str] = set()
    for i, ntp in enumerate(n.ntp_servers or ()):
        path = f"network.ntp_servers[{i}]"
        if isinstance(ntp.address, str):
            c.need(
                is_host(ntp.address),
                f"{path}.address",
                f"not an IP address or DNS name (got {shown(ntp.address)}); fix it",
            )
            c.need(
                ntp.address.strip().casefold() not in seen,
                f"{path}.address",
                f"listed twice (got {ntp.address!r}); list each server once",
            )
            seen.add(ntp.address.strip().casefold())
        if (message := ntp_key_problem(ntp.key is not None, rules)) is not None:
            c.add(f"{path}.key", message)
        if isinstance(ntp.key_id, int):
            c.need(1 <= ntp.key_id <= 65535, f"{path}.key_id", f"out of range (got {ntp.key_id}); use 1..65535")
    for i, syslog in enumerate(n.syslog_servers or ()):
        path = f"network.syslog_servers[{i}]"
        if isinstance(syslog.address, str):
            c.need(
                is_host(syslog.address),
                f"{path}.address",
                f"not an IP address or DNS name (got {shown(syslog.address)}); fix it",
            )
        c.port(syslog.port, f"{path}.port")
        c.choice(syslog.transport, SYSLOG_TRANSPORTS, f"{path}.transport")
    locations = list(n.locations or ())
    for i, name in enumerate(locations):
        c.text(name, f"network.locations[{i}]", "a location name", 250)
        c.need(
            name not in locations[:i],
            f"network.locations[{i}]",
            f"listed twice (got {name!r}); list each location once",
        )


def _snmp(d: Deployment, c: Check) -> None:
    s = d.snmp
    if s is None:
        return
    c.text(s.username, "snmp.username", "an SNMPv3 user name", 100)
    if isinstance(s.community, str) and (message := snmp_community_problem(s.community, d.policy.snmp)) is not None:
        c.add("snmp.community", message)


def _global(d: Deployment, c: Check) -> None:
    g = d.global_settings
    if g is None:
        return
    c.text(g.login_banner, "global_settings.login_banner", "banner text", 4096)
    if isinstance(g.ocsp_responder_url, str):
        parts = urlsplit(g.ocsp_responder_url)
        c.need(
            parts.scheme in ("http", "https") and bool(parts.hostname) and len(g.ocsp_responder_url) <= 255,
            "global_settings.ocsp_responder_url",
            f"not an http(s) URL of at most 255 characters (got {shown(g.ocsp_responder_url)}); "
            "the guide: set OCSP to Override with the responder's URL",
        )


def _pki(d: Deployment, c: Check) -> None:
    p = d.pki
    if p is None:
        return
    c.choice(p.mode, PKI_MODES, "pki.mode")
    if p.mode in ("manual", "command"):
        c.required(
            p.ca_chain, "pki.ca_chain", 'add ca_chain = "<PEM file>": the guide requires uploading the trusted CA chain'
        )
    c.choice(p.subject, ("fqdn", "address"), "pki.subject")
    if isinstance(p.min_valid_days, int):
        c.need(
            0 <= p.min_valid_days <= 3650,
            "pki.min_valid_days",
            f"must be 0..3650 days (got {p.min_valid_days}); how long a signed certificate must stay valid",
        )
    if p.mode == "command" and p.command is not None:
        c.need(
            bool(p.command) and bool(p.command[0].strip()),
            "pki.command",
            f"mode is 'command' but no program is given (got {list(p.command)!r}); write the argv that signs a CSR "
            'read on stdin and prints the certificate, e.g. command = ["openssl", "ca", "-batch", "-in", "/dev/stdin"]',
        )
    if isinstance(p.command_timeout_s, float):
        c.need(
            0 < p.command_timeout_s <= 3600,
            "pki.command_timeout_s",
            f"must be > 0 and at most 3600 seconds (got {p.command_timeout_s:g}); the CA program is stopped after it",
        )
    if isinstance(p.key_type, str) and (problem := csr_key_type_problem(p.key_type)) is not None:
        c.add("pki.key_type", problem)
    if isinstance(p.dn, str) and p.dn:
        for part in p.dn.split(","):
            key, sep, value = part.strip().partition("=")
            if not (sep and key.strip() in DN_KEYS and value.strip()):
                c.add(
                    "pki.dn",
                    f"bad subject field (got {part.strip()!r}); write KEY=value pairs joined by commas, KEY one of "
                    f"{', '.join(DN_KEYS)}",
                )
            elif key.strip() == "C":
                c.need(
                    bool(re.fullmatch(r"[A-Z]{2}", value.strip())),
                    "pki.dn",
                    f"country must be 2 capital letters (got {value.strip()!r}); e.g. C=GB",
                )


def _ldap(d: Deployment, c: Check) -> None:
    ldap = d.ldap
    if ldap is None:
        return
    c.choice(ldap.mode, MODES, "ldap.mode")
    if isinstance(ldap.server, str):
        c.need(is_host(ldap.server), "ldap.server", f"not an IP address or DNS name (got {shown(ldap.server)}); fix it")
    c.port(ldap.port, "ldap.port")
    if c.choice(ldap.transport, LDAP_TRANSPORTS, "ldap.transport") and ldap.transport == "plain":
        c.need(
            d.policy.authentication.ldap_permit_no_tls,
            "ldap.transport",
            "would send the service account's password and every query without TLS, which the policy forbids "
            "(got 'plain', and authentication.ldap_permit_no_tls = false: the guide's floor); use 'starttls' "
            "(port 389) or 'ldaps' (port 636)",
        )
    c.text(ldap.base_dn, "ldap.base_dn", "a DN")
    c.text(ldap.bind_username, "ldap.bind_username", "a user name or DN")
    c.choice(ldap.client_certificate, CLIENT_CERTIFICATE, "ldap.client_certificate")
    if ldap.mode == "real":
        c.required(
            ldap.bind_password, "ldap.bind_password", "required when mode is 'real': add it as env:NAME or file:PATH"
        )
        c.text(ldap.verify_user, "ldap.verify_user", "the LDAP user whose login proves each authentication change")
        c.required(
            ldap.verify_password,
            "ldap.verify_password",
            "add it as env:NAME or file:PATH: without a proven login, disabling local authentication could lock "
            "everyone out",
        )
    roles = d.policy.roles.all_roles
    # pexip-api.md 7.1: a new Manager has no "Administrator" role; the local admin is outside roles.
    fix = f"map {', '.join(roles[:-1])} and {roles[-1]}" if len(roles) > 1 else f"map {', '.join(roles)}"
    mapped: set[str] = set()
    names: dict[str, int] = {}
    for i, m in enumerate(ldap.role_mappings or ()):
        path = f"ldap.role_mappings[{i}]"
        c.text(m.name, f"{path}.name", "a mapping name", 250)
        c.text(m.group_dn, f"{path}.group_dn", "an LDAP group DN")
        if isinstance(m.name, str):
            c.need(
                m.name not in names,
                f"{path}.name",
                f"duplicate mapping name (got {m.name!r}, also ldap.role_mappings[{names.get(m.name)}]); rename one",
            )
            names.setdefault(m.name, i)
        if m.roles is None:
            continue
        c.need(len(m.roles) > 0, f"{path}.roles", "no roles (got []); list the administrator roles this group gets")
        for j, role in enumerate(m.roles):
            if c.need(role in roles, f"{path}.roles[{j}]", f"no such role on a Pexip Manager (got {role!r}); {fix}"):
                mapped.add(role)
    if ldap.role_mappings is not None:
        for role in roles:
            c.need(
                role in mapped,
                "ldap.role_mappings",
                f"role {role!r} is not mapped to any group (got mappings for: {', '.join(sorted(mapped)) or 'none'}); "
                "the guide: every administrator role must be mapped to at least one LDAP group; add a "
                "[[ldap.role_mappings]]",
            )


def _systems(d: Deployment, c: Check) -> None:
    a = d.pexip_api
    if a is not None:
        c.choice(a.mode, MODES, "pexip_api.mode")
        c.url(a.url, a.mode, "pexip_api.url")
        c.text(a.admin_user, "pexip_api.admin_user", "a user name")
        c.required(
            a.admin_password,
            "pexip_api.admin_password",
            "add it as env:NAME or file:PATH: the wizards and the API need it",
        )
        if a.mode == "real":
            why = (
                "required when mode is 'real': once client certificates are required, the orchestrator logs in with it"
            )
            c.required(a.client_cert, "pexip_api.client_cert", f'add client_cert = "<PEM file>"; {why}')
            c.required(a.client_key, "pexip_api.client_key", f'add client_key = "file:PATH"; {why}')
        if isinstance(a.address, str):
            c.need(
                ipv4(a.address) is not None,
                "pexip_api.address",
                f"not an IPv4 address (got {shown(a.address)}); give the address the Management Node answers on, "
                "or leave it out to use management.address",
            )
        c.sha256_pin(a.tls_fingerprint, "pexip_api.tls_fingerprint")
        if isinstance(a.tls_fingerprint, str):
            c.need(
                a.trust_on_first_use is not True,
                "pexip_api.trust_on_first_use",
                "true while pexip_api.tls_fingerprint pins the certificate; remove one: a pin is checked, trust on "
                "first use accepts any certificate",
            )
    if d.console is not None:
        c.choice(d.console.mode, MODES, "console.mode")
        c.port(d.console.port, "console.port")
        check_console(d.console, c)
    b = d.bios
    if (
        b is not None
        and c.choice(b.password_method, BIOS_METHODS, "bios.password_method")
        and b.password_method == "keystrokes"
    ):
        c.required(
            b.password,
            "bios.password",
            "add it as env:NAME or file:PATH: password_method 'keystrokes' types it into the BIOS",
        )
    if d.simulation is not None and isinstance(d.simulation.latency, float):
        c.need(
            d.simulation.latency >= 0,
            "simulation.latency",
            f"must be >= 0 (got {d.simulation.latency}); seconds of added latency",
        )
    if d.journal is not None and isinstance(d.journal.lease_timeout_s, float):
        if (message := lease_timeout_problem(d.journal.lease_timeout_s)) is not None:
            c.add("journal.lease_timeout_s", message)


def validate(deployment: Deployment) -> Problems:
    """Every rule of the guide and of consistency that ``deployment`` breaks.

    Returns:
        ``[(field, message), ...]``, empty when the deployment is valid. Fields are dotted
        paths as in the TOML file (``"conferencing[2].vlan"``).
    """
    d, c = deployment, Check()
    if isinstance(d.name, str):
        c.need(
            bool(_NAME.match(d.name)),
            "deployment.name",
            f"bad deployment name (got {shown(d.name)}); use 1..40 of a-z, 0-9 and '-' (VMs carry \"<name>/<node>\")",
        )
    c.choice(d.profile, PROFILES, "deployment.profile")
    if d.vcenter is not None:
        _vcenter(d.vcenter, c)
    nodes = [("management", d.management)] if d.management is not None else []
    nodes += [(f"conferencing[{i}]", n) for i, n in enumerate(d.conferencing or ())]
    context = NodeContext.of(d)
    for path, node in nodes:
        check_node(node, path, context, c)
    check_across_nodes(nodes, d, context, c)
    _network(d, c)
    _snmp(d, c)
    _global(d, c)
    _pki(d, c)
    _ldap(d, c)
    _systems(d, c)
    check_provisioning(d, c)
    return c.problems
