"""From the TOML document to :class:`~config.model.Deployment`, one section per function.

Only structure is checked here (required fields, types, unknown keys, secret references);
the rules about values are in :mod:`config._validate`. A section that is missing or
mistyped becomes ``None`` so that the rest of the file is still read and checked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from config._floor import floor_problems, policy_deviations
from config._group import group_problem
from config._policy import POLICY_PATH, flatten, read_policy
from config._reader import Problems, Table
from config.model import (
    CONFERENCING,
    MANAGEMENT,
    BiosSpec,
    ConsoleSpec,
    DaemonSpec,
    Deployment,
    GlobalSpec,
    HostSpec,
    HttpSpec,
    JournalSpec,
    LdapSpec,
    NetworkSpec,
    NodeSpec,
    NtpServer,
    OvaSpec,
    PexipApiSpec,
    PkiSpec,
    Policy,
    RoleMapping,
    SimulationSpec,
    SnmpSpec,
    SyslogServer,
    VCenterSpec,
)

__all__ = ["parse"]


def _vcenter(t: Table, policy: Policy) -> VCenterSpec:
    hosts = []
    for h in t.tables("hosts"):
        hosts.append(
            HostSpec(
                name=h.text("name"),
                datastore=h.text("datastore"),
                datastore_iops_capacity=h.integer("datastore_iops_capacity"),
                vm_network=h.text("vm_network"),
                management_network=h.text("management_network"),
                max_concurrent=h.integer("max_concurrent", required=False, default=policy.concurrency.per_host),
            )
        )
        h.close()
    return VCenterSpec(
        mode=t.text("mode"),
        url=t.text("url"),
        user=t.text("user"),
        password=t.secret("password", required=False),  # required in real mode: a rule of _validate
        datacenter=t.text("datacenter"),
        folder=t.text("folder"),
        hosts=tuple(hosts),
        ca_file=t.file_path("ca_file", required=False),
        thumbprint=t.text("thumbprint", required=False),
        reserved_vlans=t.array("reserved_vlans", int, required=False) or (),
        name_pattern=t.text("name_pattern", required=False, default="*"),
        tag=t.text("tag", required=False),
    )


def _node(t: Table, role: str) -> NodeSpec:
    conferencing = role == CONFERENCING
    return NodeSpec(
        name=t.text("name"),
        role=role,  # type: ignore[arg-type]  # one of the two Literal values
        hostname=t.text("hostname"),
        domain=t.text("domain"),
        address=t.text("address"),
        netmask=t.text("netmask"),
        gateway=t.text("gateway"),
        host=t.text("host"),
        portgroup=t.text("portgroup"),
        vlan=t.integer("vlan"),
        cpus=t.integer("cpus"),
        memory_mb=t.integer("memory_mb"),
        disk_iops_limit=t.integer("disk_iops_limit"),
        # Only conferencing nodes have these; on the management node they are unknown keys.
        location=t.text("location") if conferencing else None,
        sip_tls_fqdn=t.text("sip_tls_fqdn") if conferencing else None,
        provisioning_url=t.text("provisioning_url", required=False) if conferencing else None,
        provisioning_thumbprint=t.text("provisioning_thumbprint", required=False) if conferencing else None,
    )


def _network(t: Table) -> NetworkSpec:
    ntp = []
    for s in t.tables("ntp_servers"):
        # key is checked by _validate against policy.network_services.ntp_key_required.
        key = s.secret("key", required=False)  # None is reported by _validate; the model says required
        ntp.append(NtpServer(address=s.text("address"), key_id=s.integer("key_id"), key=key))  # type: ignore[arg-type]
        s.close()
    syslog = []
    for s in t.tables("syslog_servers"):
        syslog.append(
            SyslogServer(
                address=s.text("address"),
                port=s.integer("port", required=False, default=514),
                transport=s.text("transport", required=False, default="tls"),
            )
        )
        s.close()
    return NetworkSpec(
        dns_servers=t.array("dns_servers", str),  # type: ignore[arg-type]
        ntp_servers=tuple(ntp),
        syslog_servers=tuple(syslog),
        locations=t.array("locations", str),  # type: ignore[arg-type]
    )


_SYSLOG_MODES = ("auto", "real", "sim")


def _journal(t: Table) -> JournalSpec:
    syslog = t.text("syslog", required=False, default="auto")
    if isinstance(syslog, str) and syslog not in _SYSLOG_MODES:
        t.problem("syslog", f"not one of {', '.join(_SYSLOG_MODES)} (got {syslog!r}); pick one")
        syslog = "auto"
    group = t.text("group", required=False, default="")
    if isinstance(group, str) and group and (why := group_problem(group)) is not None:
        t.problem("group", why)
    return JournalSpec(
        path=t.file_path("path", required=False, default="orchestrator.journal.sqlite"),
        lease_timeout_s=t.number("lease_timeout_s", required=False, default=60.0),
        signing_key=t.secret("signing_key", required=False),
        syslog=syslog,
        group=group if isinstance(group, str) else "",
    )


def _http(t: Table) -> HttpSpec:
    listen = t.text("listen", required=False, default="127.0.0.1:8480")
    host, _, port = listen.rpartition(":") if isinstance(listen, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        t.problem("listen", f"not HOST:PORT (got {listen!r}); e.g. 127.0.0.1:8480")
    cert, key = t.file_path("tls_cert", required=False), t.file_path("tls_key", required=False)
    if (cert is None) != (key is None):
        t.problem("tls_cert", "set both tls_cert and tls_key (or neither, for plain HTTP)")
    return HttpSpec(listen=str(listen), token=t.secret("token", required=False), tls_cert=cert, tls_key=key)


def _daemon(t: Table) -> DaemonSpec:
    values = {}
    for key, default in (("resync_s", 300.0), ("gate_recheck_s", 5.0)):
        value = t.number(key, required=False, default=default)
        if isinstance(value, (int, float)) and not value > 0:
            t.problem(key, f"must be > 0 seconds (got {value}); e.g. {default:g}")
            value = default
        values[key] = float(value) if isinstance(value, (int, float)) else default
    return DaemonSpec(**values)


def _ldap(t: Table, policy: Policy) -> LdapSpec:
    mappings = []
    for m in t.tables("role_mappings"):
        mappings.append(RoleMapping(name=m.text("name"), group_dn=m.text("group_dn"), roles=m.array("roles", str)))  # type: ignore[arg-type]
        m.close()
    transport = t.text("transport", required=False, default="starttls")
    return LdapSpec(
        mode=t.text("mode"),
        server=t.text("server"),
        base_dn=t.text("base_dn"),
        bind_username=t.text("bind_username"),
        bind_password=t.secret("bind_password", required=False),
        role_mappings=tuple(mappings),
        ca_file=t.file_path("ca_file", required=False),
        port=t.integer("port", required=False, default=636 if transport == "ldaps" else 389),
        user_search_dn=t.text("user_search_dn", required=False, default=""),
        group_search_dn=t.text("group_search_dn", required=False, default=""),
        client_certificate=t.text(
            "client_certificate", required=False, default=policy.authentication.client_certificate
        ),
        verify_user=t.text("verify_user", required=False, default=""),
        verify_password=t.secret("verify_password", required=False),
        transport=transport,  # checked in _validate
    )


def _section(top: Table, key: str, build: Any, *args: Any, required: bool = True) -> Any:
    """Read table ``key`` with ``build``; an optional absent table is read as empty (its defaults)."""
    table = top.table(key, required=required)
    if table is None:
        if required or key in top.data:
            return None
        table = Table({}, key, top.problems, top.base)
    spec = build(table, *args)
    table.close()
    return spec


def _sha256(path: Path) -> str:
    """The SHA-256 of the file's bytes; "" when it cannot be read (a problem already reported)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def parse(data: dict[str, Any], source: Path) -> tuple[Deployment, Problems]:
    """Build the deployment from the parsed TOML of ``source``; every structural problem is listed.

    The deployment is returned even with problems (fields left ``None``) so that the
    semantic checks can still run on the rest; it is only usable when there are none.
    """
    problems: Problems = []
    top = Table(data, "", problems, source.parent)
    head = top.table("deployment")
    name = head.text("name") if head else None
    policy_file = head.file_path("policy", required=False) if head else None
    profile: Any = head.text("profile", required=False, default="primary") if head else "primary"
    if head:
        head.close()
    overrides = top.get("policy", dict, required=False)
    policy, policy_problems = read_policy(policy_file, overrides, "policy.")
    problems.extend(policy_problems)
    policy_path = Path(policy_file) if policy_file else POLICY_PATH
    if policy is not None:
        # The guide is a floor: neither the named policy file nor [policy] may weaken it.
        problems.extend(floor_problems(policy, where=str(policy_path), overridden=frozenset(flatten(overrides or {}))))
    if policy is None:
        # Check the rest of the file against the policy without the bad overrides
        # (or, if the named policy file itself is bad, against the packaged one).
        policy = read_policy(policy_file, None)[0] or read_policy(None, None)[0]
        assert policy is not None, "the packaged secure-mode-policy.toml is invalid"

    management = _section(top, "management", _node, MANAGEMENT)
    conferencing = []
    for t in top.tables("conferencing"):
        conferencing.append(_node(t, CONFERENCING))
        t.close()
    deployment = Deployment(
        name=name,  # type: ignore[arg-type]
        vcenter=_section(top, "vcenter", _vcenter, policy),
        ova=_section(
            top,
            "ova",
            lambda t: OvaSpec(management=t.file_path("management"), conferencing=t.file_path("conferencing")),
        ),
        bios=_section(
            top,
            "bios",
            lambda t: BiosSpec(
                password=t.secret("password", required=False),
                password_method=t.text("password_method", required=False, default="keystrokes"),
            ),
        ),
        management=management,
        conferencing=tuple(conferencing),
        pexip_api=_section(
            top,
            "pexip_api",
            lambda t: PexipApiSpec(
                mode=t.text("mode"),
                url=t.text("url"),
                admin_user=t.text("admin_user"),
                admin_password=t.secret("admin_password", required=False),
                ca_file=t.file_path("ca_file", required=False),
                tls_fingerprint=t.text("tls_fingerprint", required=False),
                address=t.text("address", required=False),
                client_cert=t.file_path("client_cert", required=False),
                client_key=t.secret("client_key", required=False),
                bootstrap_key=t.secret("bootstrap_key", required=False),
                provisioning_ca_file=t.file_path("provisioning_ca_file", required=False),
                provisioning_trust_first_use=t.flag("provisioning_trust_first_use", required=False, default=False),
                trust_on_first_use=t.flag("trust_on_first_use", required=False, default=False),
            ),
        ),
        console=_section(
            top,
            "console",
            lambda t: ConsoleSpec(
                mode=t.text("mode"),
                port=t.integer("port", required=False, default=22),
                known_hosts=t.file_path("known_hosts", required=False),
                address=t.text("address", required=False),
                admin_password=t.secret("admin_password", required=False),
                host_key_fingerprint=t.text("host_key_fingerprint", required=False),
                trust_on_first_use=t.flag("trust_on_first_use", required=False, default=False),
            ),
        ),
        network=_section(top, "network", _network),
        snmp=_section(
            top,
            "snmp",
            lambda t: SnmpSpec(
                username=t.text("username"),
                authentication_password=t.secret("authentication_password"),
                privacy_password=t.secret("privacy_password"),
                community=t.text("community"),
            ),
        ),
        global_settings=_section(
            top,
            "global_settings",
            lambda t: GlobalSpec(
                login_banner=t.text("login_banner"),
                ocsp_responder_url=t.text("ocsp_responder_url"),
                enable_sip=t.flag("enable_sip", required=False, default=True),
                enable_h323=t.flag("enable_h323", required=False, default=False),
                enable_webrtc=t.flag("enable_webrtc", required=False, default=True),
                enable_rtmp=t.flag("enable_rtmp", required=False, default=False),
            ),
        ),
        pki=_section(
            top,
            "pki",
            lambda t: PkiSpec(
                mode=t.text("mode"),
                ca_chain=t.file_path("ca_chain", required=False),
                key_type=t.text("key_type", required=False, default="RSA2048"),
                dn=t.text("dn", required=False, default=""),
                inbox=t.file_path("inbox", required=False),
                command=t.array("command", str, required=False),
                command_timeout_s=t.number("command_timeout_s", required=False, default=60.0),
                ms_template=t.flag("ms_template", required=False, default=False),
                subject=t.text("subject", required=False, default="fqdn"),
                min_valid_days=t.integer("min_valid_days", required=False, default=0),
            ),
        ),
        ldap=_section(top, "ldap", _ldap, policy),
        policy=policy,
        simulation=_section(
            top,
            "simulation",
            lambda t: SimulationSpec(
                world=t.file_path("world", required=False, default="orchestrator.world.sqlite"),
                latency=t.number("latency", required=False, default=0.0),
                faults=t.text("faults", required=False, default=""),
                shared=t.flag("shared", required=False, default=False),
            ),
            required=False,
        ),
        journal=_section(top, "journal", _journal, required=False),
        http=_section(top, "http", _http, required=False),
        daemon=_section(top, "daemon", _daemon, required=False),
        profile=profile,
        source=str(source),
        policy_path=str(policy_path),
        policy_sha256=_sha256(policy_path),
        policy_deviations=policy_deviations(policy),
    )
    top.close()
    return deployment, problems
