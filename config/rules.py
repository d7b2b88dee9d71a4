"""The guide's rules, each written once, as pure functions over plain values and the policy.

Config validation (:mod:`config._validate`), both vSphere preflights (the real adapter's
and the twin's), the twins and the apply-time checks of the steps all call these, so a
rule cannot drift between the place that checks the file and the place that checks the
world. A rule returns ``None`` when it holds, or the problem (a message, or the number
that breaks the limit, for the caller to word with what it knows of where it looked).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
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
    "distinct_servers",
    "distinct_ntp_servers",
    "HEARTBEATS_PER_LEASE",
    "MIN_HEARTBEAT_PERIOD_S",
    "MIN_LEASE_TIMEOUT_S",
    "heartbeat_period",
    "lease_timeout_problem",
    "CSR_KEY_TYPES",
    "csr_key_type_problem",
]

SNMP_COMMUNITY_MAX = 16  # the API's snmp_community length

_SERVERS = {"dns": "DNS", "ntp": "NTP", "syslog": "syslog"}

# A lease is renewed this many times within its timeout, so one late heartbeat never loses it;
# the engine's heartbeat period and the configuration's lower bound both come from here.
HEARTBEATS_PER_LEASE = 3
MIN_HEARTBEAT_PERIOD_S = 0.5  # the journal is not written more often than this for heartbeats
MIN_LEASE_TIMEOUT_S = HEARTBEATS_PER_LEASE * MIN_HEARTBEAT_PERIOD_S


# The CSR generator's private_key_type choices (pexip-api.md section 2, item 4) but UPLOAD: the
# key must be made on the node, never handed to it. A given Manager may offer fewer.
CSR_KEY_TYPES = ("RSA2048", "RSA4096", "ECDSAP256")


def csr_key_type_problem(key_type: str, offered: Sequence[str] = CSR_KEY_TYPES) -> str | None:
    """Guide: "Private key type ... Default: RSA (2048bit)"; the version's ``valid_choices`` say what it makes.

    ``offered``: the Manager's ``certificate_signing_request`` ``private_key_type`` choices
    (default: every one the API is known to have).
    """
    choices = [c for c in offered if c != "UPLOAD"]
    if key_type not in choices:
        return (
            f"key type not offered by the CSR generator (got {key_type!r}); use one of: {', '.join(choices)}"
            " (a user-provided key, UPLOAD, would mean handing the node a key made elsewhere)"
        )
    return None


def vlan_problem(vlan: int, policy: VlanPolicy, reserved: Collection[int]) -> str | None:
    """Guide: a node's VLAN ID must not be 4095 (virtual guest tagging) nor a reserved VLAN ID.

    ``policy`` gives the valid range and the forbidden IDs; ``reserved`` is the site's
    ``vcenter.reserved_vlans``.
    """
    low, high = policy.min, policy.max
    if vlan in policy.forbidden:
        return (
            f"VLAN {vlan} is reserved for virtual guest tagging (got {vlan}); "
            f"the guide forbids it: use a VLAN ID in {low}..{high}"
        )
    if not low <= vlan <= high:
        return f"VLAN ID out of range, outside {low}..{high} (got {vlan}); use a VLAN ID in {low}..{high}"
    if vlan in reserved:
        return (
            f"VLAN {vlan} is in vcenter.reserved_vlans (got {vlan}); "
            "the guide forbids conflicts with reserved VLAN IDs: pick another"
        )
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


def distinct_servers(addresses: Iterable[str]) -> int:
    """How many different servers ``addresses`` name: one written twice (in any case, with spaces) counts once."""
    return len({address.strip().casefold() for address in addresses})


def distinct_ntp_servers(servers: Iterable[tuple[str, int]]) -> int:
    """How many NTP servers ``(address, key_id)`` count towards the guide's minimum.

    Two entries of one server are one server, and two servers sharing a key id share one
    key: the count is the smaller of the distinct addresses and the distinct key ids.
    """
    listed = list(servers)
    return min(distinct_servers(address for address, _ in listed), len({key_id for _, key_id in listed}))


def too_few_servers(kind: Literal["dns", "ntp", "syslog"], count: int, policy: NetworkServicesPolicy) -> str | None:
    """Guide: at least two DNS servers, two NTP servers and one remote syslog server."""
    minimum = {"dns": policy.min_dns_servers, "ntp": policy.min_ntp_servers, "syslog": policy.min_syslog_servers}[kind]
    if count < minimum:
        return (
            f"too few {_SERVERS[kind]} servers (got {count}); the guide requires at least {minimum}, "
            "counted as distinct servers (and, for NTP, distinct key ids)"
        )
    return None


def ntp_key_problem(has_key: bool, policy: NetworkServicesPolicy) -> str | None:
    """Guide: "The configuration for each NTP server must include key authentication credentials"."""
    if policy.ntp_key_required and not has_key:
        return (
            "NTP server without key (got none); the guide: each NTP server must include key authentication "
            'credentials: add key = "env:NAME" and key_id'
        )
    return None


def snmp_community_problem(community: str, policy: SnmpPolicy) -> str | None:
    """Guide: change the SNMP community to something other than the default; the API takes 1..16 characters."""
    forbidden = policy.forbidden_community
    # "PUBLIC" or " public" is still the default to anyone guessing: compare without case and spaces.
    if "".join(community.split()).casefold() == "".join(forbidden.split()).casefold():
        return f"the default community (got {community!r}); the guide: change it to something other than {forbidden!r}"
    if not 0 < len(community) <= SNMP_COMMUNITY_MAX:
        return f"must be 1..{SNMP_COMMUNITY_MAX} characters (got {len(community)} characters); shorten it"
    return None


def heartbeat_period(lease_timeout_s: float) -> float:
    """Seconds between two heartbeats of a lease that times out after ``lease_timeout_s``."""
    return max(lease_timeout_s / HEARTBEATS_PER_LEASE, MIN_HEARTBEAT_PERIOD_S)


def lease_timeout_problem(lease_timeout_s: float) -> str | None:
    """A lease's timeout must span at least ``HEARTBEATS_PER_LEASE`` heartbeats, or a live lease expires.

    With the heartbeat at ``heartbeat_period`` (never below ``MIN_HEARTBEAT_PERIOD_S``) this is
    ``lease_timeout_s >= MIN_LEASE_TIMEOUT_S``, compared so, without the rounding of a division.
    """
    if lease_timeout_s < MIN_LEASE_TIMEOUT_S:
        return (
            f"shorter than {HEARTBEATS_PER_LEASE} heartbeats (got {lease_timeout_s}); a live process would lose "
            f"its lease and a second one drive the same node: use at least {MIN_LEASE_TIMEOUT_S} seconds"
        )
    return None


def any_real(modes: Sequence[str]) -> bool:
    """Whether any system of a deployment is real (``modes``: vcenter, pexip_api, console, ldap)."""
    return "real" in modes


# The journal's signing key: required once any system is real (issue #7: a record no one can rewrite).
SIGNING_KEY_REQUIRED = (
    "required when any system is real: the key that signs the journal's checkpoints. Make one "
    "with `openssl genpkey -algorithm ed25519 -out /etc/orchestrator/journal-key.pem` (chmod 600, "
    'outside the journal\'s directory) and set journal.signing_key = "file:/etc/orchestrator/journal-key.pem"'
)
