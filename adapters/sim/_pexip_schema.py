"""The simulated Management API's schema: resources, fields, defaults and validation.

Transcribed from ``pexip-api.md`` section 2 (types, ranges, enums, defaults, write-only and
read-only fields), so that the twin refuses what the real API refuses, with a field-keyed
message like the real 400 body (``{"field": ["message"]}``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

from adapters.sim._pexip_fields import Field, Resource, _b, _e, _i, _s, _uri, _uris
from config.errors import Rejected

__all__ = [
    "Field",
    "Resource",
    "RESOURCES",
    "BASE",
    "FILTERING",
    "PERMISSIONS",
    "ROLES",
    "api_error",
    "uri_of",
    "parse_uri",
    "validate",
    "defaults",
]

BASE = "/api/admin/configuration/v1/"
_URI = re.compile(r"^/api/admin/configuration/v1/([a-z_0-9]+)/([0-9]+)/$")


_RO = Field("str", "", read_only=True)
_ROB = Field("bool", False, read_only=True)

_CERT_METADATA = {
    name: _RO
    for name in (
        "start_date end_date subject_name subject_hash subject_alt_names issuer_name issuer_hash "
        "raw_subject raw_issuer serial_no key_id issuer_key_id text"
    ).split()
} | {"server_auth_usage": _ROB, "client_auth_usage": _ROB}

_SNMP = {
    "snmp_mode": _e("DISABLED", "STANDARD", "AUTHPRIV", default="DISABLED"),
    "snmp_username": _s(100),
    "snmp_authentication_password": _s(100, lo=8, write_only=True),
    "snmp_privacy_password": _s(100, lo=8, write_only=True),
    "snmp_community": _s(16, "public"),
    "snmp_system_contact": _s(70),
    "snmp_system_location": _s(70),
    "snmp_network_management_system": _uri("snmp_network_management_system"),
}

_NODE = {
    **_SNMP,
    "enable_ssh": _e("GLOBAL", "OFF", "ON", default="GLOBAL"),
    "ipv6_address": _s(250),
    "ipv6_gateway": _s(250),
    "alternative_fqdn": _s(255),
    "tls_certificate": _uri("tls_certificate"),
    "tls_client_certificate": _uri("tls_certificate"),
    "description": _s(250),
}


RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in (
        Resource(
            "global",
            {
                "enable_chat": _b(True),
                "enable_dialout": _b(True),
                "enable_legacy_dialout_api": _b(False),
                "enable_ssh": _b(True),
                "enable_application_api": _b(True),
                "management_qos": _i(0, 63, 0),
                "ocsp_state": _e("OFF", "ON", "OVERRIDE", default="OFF"),
                "ocsp_responder_url": _s(255),
                "sip_tls_cert_verify_mode": _e("OFF", "ON", default="OFF"),
                "legacy_api_http": _b(False),
                "legacy_api_username": _s(100),
                "legacy_api_password": _s(100, write_only=True),
                "logon_banner": _s(4096),
                "session_timeout_enabled": _b(True),
                "management_session_timeout": _i(5, 1440, 30),
                "enable_sip": _b(True),
                "enable_sip_udp": _b(False),
                "enable_h323": _b(True),
                "enable_webrtc": _b(True),
                "enable_rtmp": _b(True),
                "crypto_mode": _e("besteffort", "on", "off", default="besteffort"),
                "content_security_policy_state": _b(True),
                "signalling_ports_start": _i(1024, 65535, 33000),
                "signalling_ports_end": _i(1024, 65535, 39999),
                "media_ports_start": _i(1024, 65535, 40000),
                "media_ports_end": _i(1024, 65535, 49999),
            },
            singleton=True,
        ),
        Resource(
            "authentication",
            {
                "source": _e("LOCAL", "LDAP", "LDAP+LOCAL", "OIDC", "OIDC+LOCAL", "LDAP+OIDC+LOCAL", default="LOCAL"),
                "client_certificate": _e("NO", "CN", "UPN", default="NO"),
                "ldap_server": _s(255),
                "ldap_base_dn": _s(255),
                "ldap_bind_username": _s(255),
                "ldap_bind_password": _s(100, write_only=True),
                "ldap_user_search_dn": _s(255),
                "ldap_user_filter": _s(1024, "(&(objectclass=person)(!(objectclass=computer)))"),
                "ldap_user_search_filter": _s(1024, "(|(uid={username})(sAMAccountName={username}))"),
                "ldap_user_group_attributes": _s(255, "memberOf"),
                "ldap_group_search_dn": _s(255),
                "ldap_group_filter": _s(1024, "(|(objectclass=group)(objectclass=groupOfNames))"),
                "ldap_group_membership_filter": _s(1024, "(member={userdn})"),
                "ldap_use_global_catalog": _b(False),
                "ldap_permit_no_tls": _b(False),
            },
            singleton=True,
        ),
        Resource(
            "management_vm",
            {
                **_NODE,
                "name": _s(32),
                "hostname": _s(63),
                "domain": _s(192),
                "address": Field("ip"),
                "netmask": _s(45),
                "gateway": _s(45),
                "primary": _ROB,
                "mtu": _i(512, 1500, 1500),
                "dns_servers": _uris("dns_server", embed=True),
                "ntp_servers": _uris("ntp_server", embed=True),
                "syslog_servers": _uris("syslog_server", embed=True),
            },
            singleton=True,
        ),
        Resource(
            "worker_vm",
            {
                **_NODE,
                "name": _s(32, required=True),
                "hostname": _s(63, required=True),
                "domain": _s(192),
                "address": Field("ip", required=True),
                "netmask": _s(45, required=True),
                "gateway": _s(45, required=True),
                "system_location": _uri("system_location", required=True),
                "node_type": _e("CONFERENCING", "PROXYING", default="CONFERENCING"),
                # [?] in pexip-api.md: the ESXi choices are read from /schema/ on a live node.
                "deployment_type": _e(
                    "MANUAL-PROVISION-ONLY",
                    "MANUAL-ESXI",
                    "MANUAL-HYPERV2012",
                    "MANUAL-KVM",
                    "MANUAL-XEN",
                    default="MANUAL-PROVISION-ONLY",
                ),
                "password": _s(100, write_only=True, required=True),  # Terraform marks it required
                "vm_cpu_count": _i(2, 128, 4),
                "vm_system_memory": _i(2000, 64000, 4096),
                "enable_distributed_database": _b(True),
                "maintenance_mode": _b(False),
                "secondary_address": _s(45),
                "static_nat_address": _s(45),
            },
        ),
        Resource(
            "system_location",
            {
                "name": _s(250, required=True),
                "description": _s(250),
                "mtu": _i(512, 1500, 1500),
                "media_qos": _i(0, 63, 0),
                "signalling_qos": _i(0, 63, 0),
                "dns_servers": _uris("dns_server", embed=True),
                "ntp_servers": _uris("ntp_server", embed=True),
                "syslog_servers": _uris("syslog_server", embed=True),
                "snmp_network_management_system": _uri("snmp_network_management_system"),
            },
        ),
        Resource("dns_server", {"address": Field("ip", required=True), "description": _s(250)}),
        Resource(
            "ntp_server",
            {
                "address": _s(255, required=True),
                "description": _s(250),
                "key": _s(100, write_only=True),  # stored as a SHA1 hash on the real node
                "key_id": Field("int", None, lo=1, hi=65535),
            },
        ),
        Resource(
            "syslog_server",
            {
                "address": _s(255, required=True),
                "description": _s(250),
                "port": _i(1, 65535, 514),
                "transport": _e("udp", "tcp", "tls", default="udp"),
                "proto_format": _e("pexip", "rfc3164", "rfc5424", default="rfc3164"),
                "audit_log": _b(False),
                "support_log": _b(False),
                "web_log": _b(False),
                "syslog_log": _b(False),
            },
        ),
        Resource(
            "snmp_network_management_system",
            {
                "name": _s(250, required=True),
                "description": _s(250),
                "address": _s(255, required=True),
                "port": _i(1, 65535, 161),
                "snmp_trap_community": _s(16, "public"),
            },
        ),
        Resource(
            "tls_certificate",
            {
                "certificate": Field("str", "", hi=65536, required=True),
                "private_key": _s(12288, required=True, write_only=True),
                "private_key_passphrase": _s(100, write_only=True),
                "parameters": _s(1000),
                "nodes": Field("strs", []),
                **_CERT_METADATA,
            },
        ),
        Resource(
            "ca_certificate",
            {
                "certificate": Field("str", "", hi=65536, required=True),
                "trusted_intermediate": _b(False),
                **_CERT_METADATA,
            },
        ),
        Resource(
            "certificate_signing_request",
            {
                "subject_name": _s(250, required=True),
                "dn": _s(250),
                "additional_subject_alt_names": _s(4096),
                "private_key_type": _e("RSA2048", "RSA4096", "ECDSAP256", "UPLOAD", default="RSA2048"),
                "private_key": _s(12288, write_only=True),
                "private_key_passphrase": _s(100, write_only=True),
                "ad_compatible": _b(False),
                "tls_certificate": _uri("tls_certificate"),
                "eku_server_auth": _b(True),
                "eku_client_auth": _b(True),
                "certificate": _s(65536, write_only=True),  # PATCH only: completes the CSR
                "csr": _RO,
            },
        ),
        Resource(
            "role",
            {"name": _s(250, required=True), "permissions": _uris("permission", embed=True)},
        ),
        Resource("permission", {"name": _RO, "codename": _RO}, read_only=True),
        Resource(
            "ldap_role",
            {"name": _s(250, required=True), "ldap_group_dn": _s(255, required=True), "roles": _uris("role")},
        ),
        Resource(
            "role_mapping",
            {
                "name": _s(250, required=True),
                "source": _e("LDAP", "OIDC", default="LDAP"),
                "value": _s(255, required=True),
                "roles": _uris("role"),
            },
        ),
    )
}

# The fields each resource's /schema/ declares under "filtering" (besides id): only those seen
# filtered on a real Manager (pexip-api.md 7.6). The lab's server refuses any other filter with a
# 400, as Tastypie does; clients filter the rest themselves.
FILTERING: dict[str, tuple[str, ...]] = {
    "dns_server": ("address",),
    "ntp_server": ("address",),
    "system_location": ("name",),
    "worker_vm": ("name",),
    "tls_certificate": ("subject_name",),
}
RESOURCES = {name: dataclasses.replace(r, filtering=("id", *FILTERING.get(name, ()))) for name, r in RESOURCES.items()}

# Permission names (the UI labels) and codenames; only is_admin and use_api are evidenced.
PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("Is an administrator", "is_admin"),
    ("May use web interface", "use_web_interface"),
    ("May use API", "use_api"),
    ("May view logs", "view_logs"),
    ("May generate system snapshot", "generate_snapshot"),
    ("May change configuration", "change_configuration"),
    ("May view configuration", "view_configuration"),
    ("May manage conferences", "manage_conferences"),
    ("May view conference status", "view_conference_status"),
    ("May manage backups", "manage_backups"),
    ("May upgrade software", "upgrade_software"),
)

# The roles a new Management Node ships with, by permission name: exactly two (pexip-api.md 7.1;
# the local admin is outside roles, and there is no "Administrator" role).
_COMMON = (
    "Is an administrator",
    "May use web interface",
    "May use API",
    "May view logs",
    "May generate system snapshot",
    "May view configuration",
    "May view conference status",
)
ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Read-only", _COMMON),
    ("Read-write", (*_COMMON, "May change configuration", "May manage conferences")),
)


def api_error(status: int, message: str) -> Rejected:
    """A refusal of the simulated API. ``http_status`` is what the real API would answer
    (400 validation, 401 login, 404 unknown, 405 verb), for the lab's HTTP server."""
    exc = Rejected(message, system="pexip")
    exc.http_status = status  # type: ignore[attr-defined]
    return exc


def uri_of(resource: str, ident: int | str) -> str:
    return f"{BASE}{resource}/{ident}/"


def parse_uri(uri: str) -> tuple[str, str]:
    """``(resource, id)`` of a configuration detail URI. Raises ``Rejected`` (404) otherwise."""
    match = _URI.match(uri or "")
    if not match or match.group(1) not in RESOURCES:
        raise api_error(404, f"{uri!r} is not a configuration object URI (404); expected {BASE}<resource>/<id>/")
    return match.group(1), match.group(2)


def defaults(resource: str) -> dict[str, Any]:
    """Every returned (not write-only) field of ``resource`` at its default."""
    return {
        name: (list(f.default) if isinstance(f.default, list) else f.default)
        for name, f in RESOURCES[resource].fields.items()
        if not f.write_only
    }


def validate(resource: str, fields: dict[str, Any], *, creating: bool, exists: Callable[[str], bool]) -> dict[str, Any]:
    """Check ``fields`` against the schema; return them with URIs normalised.

    Raises:
        Rejected: a 400 with every problem keyed by field, like the real API's body.
    """
    spec = RESOURCES[resource]
    problems: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}

    def bad(name: str, message: str) -> None:
        problems.setdefault(name, []).append(message)

    for name, value in fields.items():
        f = spec.fields.get(name)
        if f is None or name in ("id", "resource_uri"):
            if name not in ("id", "resource_uri"):
                bad(name, f"Unknown field of {resource}; known fields: {', '.join(sorted(spec.fields))}.")
            continue
        if f.read_only:
            bad(name, "This field is read-only.")
            continue
        message = _check(f, value, exists)
        if message:
            bad(name, message)
        else:
            clean[name] = value
    if creating:
        for name, f in spec.fields.items():
            if f.required and name not in fields:
                bad(name, "This field is required.")
    if problems:
        raise api_error(400, f"{resource}: 400 {json.dumps(problems)}")
    return clean


def _check(f: Field, value: Any, exists: Callable[[str], bool]) -> str | None:
    if value is None:
        return None if not f.required and f.kind in ("uri", "int") else "This field may not be null."
    if f.kind == "bool":
        return None if isinstance(value, bool) else f"Must be true or false (got {value!r})."
    if f.kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"Must be an integer (got {value!r})."
        if (f.lo is not None and value < f.lo) or (f.hi is not None and value > f.hi):
            return f"Must be between {f.lo} and {f.hi} (got {value})."
        return None
    if f.kind == "enum":
        return None if value in f.choices else f"{value!r} is not a valid choice; choose one of {', '.join(f.choices)}."
    if f.kind == "ip":
        try:
            ipaddress.ip_address(value)
        except (ValueError, TypeError):
            return f"Enter a valid IPv4 or IPv6 address (got {value!r})."
        return None
    if f.kind == "str":
        if not isinstance(value, str):
            return f"Must be a string (got {type(value).__name__})."
        if f.hi is not None and len(value) > f.hi:
            return f"Ensure this field has no more than {f.hi} characters (it has {len(value)})."
        if f.lo and len(value) < f.lo:
            return f"Ensure this field has at least {f.lo} characters (it has {len(value)})."
        if f.required and not value:
            return "This field may not be blank."
        return None
    if f.kind == "strs":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "Must be a list of strings."
    if f.kind in ("uri", "uris"):
        values = [value] if f.kind == "uri" else value
        if f.kind == "uris" and not isinstance(value, list):
            return f"Must be a list of {f.ref} resource URIs."
        for v in values:
            if not isinstance(v, str) or not v.startswith(f"{BASE}{f.ref}/"):
                return f"{v!r} is not a {f.ref} resource URI ({BASE}{f.ref}/<id>/)."
            if not exists(v):
                return f"{v} does not exist."
        return None
    raise AssertionError(f"unknown field kind {f.kind}")
