"""The guide's rules, each written once, as pure functions over plain values and the policy.

Config validation (:mod:`config._validate`), both vSphere preflights (the real adapter's
and the twin's), the twins and the apply-time checks of the steps all call these, so a
rule cannot drift between the place that checks the file and the place that checks the
world. A rule returns ``None`` when it holds, or the problem (a message, or the number
that breaks the limit, for the caller to word with what it knows of where it looked).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Literal

from config.policy import NetworkServicesPolicy, ReservationPolicy, SnmpPolicy, VlanPolicy

__all__ = [
    "SNMP_COMMUNITY_MAX",
    "vlan_problem",
    "iops_in_use",
    "iops_over_budget",
    "disk_iops_limit_problem",
    "too_few_servers",
    "ntp_key_problem",
    "snmp_community_problem",
]

SNMP_COMMUNITY_MAX = 16  # the API's snmp_community length

_SERVERS = {"dns": "DNS", "ntp": "NTP", "syslog": "syslog"}


def vlan_problem(vlan: int, policy: VlanPolicy, reserved: Collection[int]) -> str | None:
    """Guide: a node's VLAN ID must not be 4095 (virtual guest tagging) nor a reserved VLAN ID.

    ``policy`` gives the valid range and the forbidden IDs; ``reserved`` is the site's
    ``vcenter.reserved_vlans``.
    """
    low, high = policy.min, policy.max
    if vlan in policy.forbidden:
        return (f"VLAN {vlan} is reserved for virtual guest tagging (got {vlan}); "
                f"the guide forbids it: use a VLAN ID in {low}..{high}")
    if not low <= vlan <= high:
        return f"VLAN ID out of range, outside {low}..{high} (got {vlan}); use a VLAN ID in {low}..{high}"
    if vlan in reserved:
        return (f"VLAN {vlan} is in vcenter.reserved_vlans (got {vlan}); "
                "the guide forbids conflicts with reserved VLAN IDs: pick another")
    return None


def iops_in_use(limits: Iterable[int]) -> int:
    """The IOPS a datastore budgets for these disk limits: an unlimited disk (-1) reserves none."""
    return sum(max(limit, 0) for limit in limits)


def iops_over_budget(limits: Iterable[int], capacity: int) -> int | None:
    """Guide: "The sum of all IOP limits for all VMs on the same host must not exceed the capacity
    of the datastore". The sum of ``limits`` when it exceeds ``capacity``, else None."""
    total = iops_in_use(limits)
    return total if total > capacity else None


def disk_iops_limit_problem(limit: int, policy: ReservationPolicy) -> str | None:
    """Guide: every Pexip VM's disks get an IOPS limit (``reservation.disk_iops_limit_required``)."""
    if policy.disk_iops_limit_required and limit < 1:
        return f"must be >= 1 (got {limit}); the guide requires an IOPS limit on every disk"
    return None


def too_few_servers(kind: Literal["dns", "ntp", "syslog"], count: int, policy: NetworkServicesPolicy) -> str | None:
    """Guide: at least two DNS servers, two NTP servers and one remote syslog server."""
    minimum = {"dns": policy.min_dns_servers, "ntp": policy.min_ntp_servers, "syslog": policy.min_syslog_servers}[kind]
    if count < minimum:
        return f"too few {_SERVERS[kind]} servers (got {count}); the guide requires at least {minimum}"
    return None


def ntp_key_problem(has_key: bool, policy: NetworkServicesPolicy) -> str | None:
    """Guide: "The configuration for each NTP server must include key authentication credentials"."""
    if policy.ntp_key_required and not has_key:
        return ("NTP server without key (got none); the guide: each NTP server must include key authentication "
                "credentials: add key = \"env:NAME\" and key_id")
    return None


def snmp_community_problem(community: str, policy: SnmpPolicy) -> str | None:
    """Guide: change the SNMP community to something other than the default; the API takes 1..16 characters."""
    forbidden = policy.forbidden_community
    if community == forbidden:
        return f"the default community (got {forbidden!r}); the guide: change it to something other than {forbidden!r}"
    if not 0 < len(community) <= SNMP_COMMUNITY_MAX:
        return f"must be 1..{SNMP_COMMUNITY_MAX} characters (got {len(community)} characters); shorten it"
    return None
