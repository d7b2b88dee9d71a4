"""A step's observation as evidence: flat ``field -> value`` pairs named as the step's ``Change.field``.

The steps diff what they observe against the desired state; the audit shows what they observed.
Naming the evidence the way the diff names its changes (``global.enable_chat``,
``disk[Hard disk 1].iops_limit``, ``system_location[east].mtu``) lets one control pattern pick
both its changes and its evidence. Write-only fields never come back from the API; anything
whose name says password or key is dropped all the same, before the report's redaction pass.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from orchestrator.steps._rest import normalise

__all__ = ["flatten"]

_PREFIX = {
    "global_settings": "global",
    "sip_tls_verification": "global",
    "ldap_connection": "authentication",
    "client_certificate_auth": "authentication",
    "disable_local_auth": "authentication",
}
_WORDS_OF_SECRETS = ("password", "secret", "private_key", "passphrase", "token")


def _public(key: str) -> bool:
    return not any(word in key for word in _WORDS_OF_SECRETS)


def _object(prefix: str, obj: dict[str, Any] | None, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    if obj is None:
        return {prefix: None}
    return {f"{prefix}.{k}": normalise(v) for k, v in obj.items() if (keys is None or k in keys) and _public(k)}


def _reservation(observed: dict[str, Any]) -> dict[str, Any]:
    current = observed["current"]
    out = {f.name: getattr(current, f.name) for f in dataclasses.fields(current) if f.name != "disks"}
    for disk in current.disks:
        out[f"disk[{disk.label}].shares"] = disk.shares
        out[f"disk[{disk.label}].iops_limit"] = disk.iops_limit
    return out


def _network(observed: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, resource, keys in (
        ("dns", "dns_server", ("address",)),
        ("ntp", "ntp_server", ("address", "key_id")),
        ("syslog", "syslog_server", ("address", "port", "transport")),
    ):
        for address, obj in observed[kind].items():
            out.update(_object(f"{resource}[{address}]", obj, keys))
    out.update(_object("management_vm", observed["manager"], ("dns_servers", "ntp_servers", "syslog_servers")))
    return out


def _locations(observed: dict[str, Any]) -> dict[str, Any]:
    keys = ("mtu", "media_qos", "signalling_qos", "dns_servers", "ntp_servers", "syslog_servers")
    out: dict[str, Any] = {}
    for name, obj in observed["locations"].items():
        out.update(_object(f"system_location[{name}]", obj, keys))
    return out


def _certificate(observed: dict[str, Any]) -> dict[str, Any]:
    cert = observed["certificate"]
    if cert is None:
        return {"tls_certificate": None, "node.tls_certificate": normalise(observed["node"].get("tls_certificate"))}
    keys = ("subject_name", "issuer_name", "serial_no", "start_date", "end_date", "resource_uri")
    return {
        **{f"tls_certificate.{k}": cert.get(k) for k in keys if k in cert},
        "node.tls_certificate": normalise(observed["node"].get("tls_certificate")),
    }


def _ca_chain(observed: dict[str, Any]) -> dict[str, Any]:
    chain, uploaded = observed["chain"], observed["uploaded"]
    return {"ca_certificate": f"{sum(1 for b in chain if b in uploaded)} of {len(chain)} uploaded"}


def _roles(observed: dict[str, Any]) -> dict[str, Any]:
    names = {uri: name for name, uri in observed["permissions"].items()}
    out: dict[str, Any] = {}
    for name, role in observed["roles"].items():
        perms = None if role is None else sorted(names.get(p, p) for p in normalise(role.get("permissions") or []))
        out[f"role[{name}].permissions"] = perms
    return out


def _mappings(observed: dict[str, Any]) -> dict[str, Any]:
    names = {uri: name for name, uri in observed["roles"].items()}
    out: dict[str, Any] = {}
    for name, present in observed.get("groups", {}).items():
        out[f"ldap_group[{name}]"] = "in the directory" if present else "not in the directory"
    for name, obj in observed["mappings"].items():
        if obj is None:
            out[f"ldap_role[{name}]"] = None
            continue
        out[f"ldap_role[{name}].ldap_group_dn"] = obj.get("ldap_group_dn")
        out[f"ldap_role[{name}].roles"] = sorted(names.get(r, r) for r in normalise(obj.get("roles") or []))
    return out


def flatten(step: str, observed: Any) -> dict[str, Any]:
    """What ``step`` observed, as ``field -> value`` (JSON-like values) named as its changes."""
    if step in _PREFIX:
        return _object(_PREFIX[step], observed)
    if step == "snmpv3":
        return {f"snmp.{k}": v for k, v in observed.items() if k.startswith("snmp_") and _public(k)}
    if step == "sip_tls_fqdn":
        return _object("worker_vm", observed, ("name", "alternative_fqdn"))
    if step == "deploy_ova":
        vm = observed
        return {"vm": None if vm is None else f"{vm.name} on {vm.host}, portgroup {vm.portgroup}, {vm.power_state}"}
    if step == "lock_bios":
        return dataclasses.asdict(observed["bios"])
    if step in ("installation_wizard", "security_wizard"):
        return {step: observed}  # the console's wizard state: unconfigured, installed, secured
    if step == "verify_admin_login":
        return {"login": observed}
    if step in ("register_node", "config_sync", "authentication_sync"):
        return {"sync_status": observed}
    special = {
        "reserve_resources": _reservation,
        "network_services": _network,
        "location_qos": _locations,
        "install_certificate": _certificate,
        "trusted_ca_chain": _ca_chain,
        "administrator_roles": _roles,
        "ldap_role_mapping": _mappings,
    }
    if step in special:
        return special[step](observed)
    if isinstance(observed, dict):
        return {f"{step}.{k}": v for k, v in observed.items() if _public(str(k))}
    return {step: observed if isinstance(observed, (str, int, float, bool, type(None))) else repr(observed)}
