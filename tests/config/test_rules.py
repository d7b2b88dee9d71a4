"""config.rules: the guide's rules, each a pure function, as tables of cases."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config.load import load_policy, simulated_deployment, validate
from config.policy import NetworkServicesPolicy, ReservationPolicy, SnmpPolicy, VlanPolicy
from config.rules import (
    disk_iops_limit_problem,
    distinct_ntp_servers,
    distinct_servers,
    iops_in_use,
    iops_over_budget,
    ntp_key_problem,
    snmp_community_problem,
    too_few_servers,
    vlan_problem,
)

GUIDE_VLANS = VlanPolicy(min=0, max=4094, forbidden=(4095,))
NARROW_VLANS = VlanPolicy(min=10, max=20, forbidden=(15,))
SERVICES = NetworkServicesPolicy(min_dns_servers=2, min_ntp_servers=2, ntp_key_required=True, min_syslog_servers=1)
NO_NTP_KEYS = dataclasses.replace(SERVICES, ntp_key_required=False)
RESERVATION = load_policy().reservation
NO_IOPS_LIMIT = dataclasses.replace(RESERVATION, disk_iops_limit_required=False)
SNMP = SnmpPolicy(snmp_mode="AUTHPRIV", forbidden_community="public")


def test_the_tables_use_the_packaged_policy() -> None:
    """The policies the tables are written against are the packaged file's values."""
    policy = load_policy()
    assert (policy.vlan, policy.network_services, policy.snmp) == (GUIDE_VLANS, SERVICES, SNMP)
    assert isinstance(RESERVATION, ReservationPolicy) and RESERVATION.disk_iops_limit_required


@pytest.mark.parametrize(
    ("vlan", "policy", "reserved", "fragment"),
    [
        (100, GUIDE_VLANS, (), None),  # an ordinary VLAN
        (0, GUIDE_VLANS, (), None),  # the lowest valid ID
        (4094, GUIDE_VLANS, (), None),  # the highest valid ID
        (4095, GUIDE_VLANS, (), "reserved for virtual guest tagging"),  # the guide's forbidden VLAN
        (4095, GUIDE_VLANS, (4095,), "guest tagging"),  # forbidden wins over reserved: the stronger reason
        (4096, GUIDE_VLANS, (), "out of range"),  # beyond 802.1Q
        (5000, GUIDE_VLANS, (), "outside 0..4094"),  # the message names the range
        (-1, GUIDE_VLANS, (), "outside 0..4094"),  # below it
        (1002, GUIDE_VLANS, (1002, 1003), "reserved_vlans"),  # a site-reserved VLAN
        (1004, GUIDE_VLANS, (1002, 1003), None),  # next to the reserved ones
        (9, NARROW_VLANS, (), "outside 10..20"),  # the range comes from the policy
        (15, NARROW_VLANS, (), "guest tagging"),  # and so do the forbidden IDs
        (4095, NARROW_VLANS, (), "outside 10..20"),  # 4095 is not special to the rule, only to the policy
    ],
)
def test_vlan_problem(vlan: int, policy: VlanPolicy, reserved: tuple[int, ...], fragment: str | None) -> None:
    """A VLAN is refused for the policy's reason, or accepted."""
    problem = vlan_problem(vlan, policy, reserved)
    assert (problem is None) if fragment is None else (problem is not None and fragment in problem), problem


@pytest.mark.parametrize(
    ("limits", "total"),
    [
        ([], 0),  # no disks
        ([1000, 2000], 3000),  # limits add up
        ([-1, 500], 500),  # an unlimited disk reserves nothing
        ([0, -1], 0),  # neither does a zero
    ],
)
def test_iops_in_use(limits: list[int], total: int) -> None:
    """The budgeted IOPS are the positive limits' sum."""
    assert iops_in_use(limits) == total


@pytest.mark.parametrize(
    ("limits", "capacity", "over"),
    [
        ([1000, 1000], 2000, None),  # exactly the capacity: allowed ("must not exceed")
        ([1000, 1001], 2000, 2001),  # one over: the total is returned
        ([-1, 1500], 1000, 1500),  # unlimited disks do not count, the rest does
        ([-1, -1], 0, None),  # only unlimited disks: nothing budgeted
        ([], 0, None),  # nothing at all
        (iter([600, 600]), 1000, 1200),  # any iterable, read once
    ],
)
def test_iops_over_budget(limits: list[int], capacity: int, over: int | None) -> None:
    """The datastore budget: the total when it exceeds the capacity, else None."""
    assert iops_over_budget(limits, capacity) == over


@pytest.mark.parametrize(
    ("limit", "policy", "fragment"),
    [
        (1, RESERVATION, None),  # the smallest limit
        (2000, RESERVATION, None),  # a usual one
        (0, RESERVATION, "must be >= 1 (got 0)"),  # no limit where the guide wants one
        (-1, RESERVATION, "requires an IOPS limit"),  # vSphere's "unlimited"
        (0, NO_IOPS_LIMIT, None),  # a policy that does not require limits
    ],
)
def test_disk_iops_limit_problem(limit: int, policy: ReservationPolicy, fragment: str | None) -> None:
    """Every disk gets an IOPS limit when the policy requires it."""
    problem = disk_iops_limit_problem(limit, policy)
    assert (problem is None) if fragment is None else (problem is not None and fragment in problem), problem


@pytest.mark.parametrize(
    ("kind", "count", "fragment"),
    [
        ("dns", 2, None),  # the guide's two DNS servers
        ("dns", 1, "too few DNS servers (got 1); the guide requires at least 2"),  # one short
        ("ntp", 3, None),  # more than enough
        ("ntp", 0, "too few NTP servers (got 0)"),  # none
        ("syslog", 1, None),  # the one remote syslog server
        ("syslog", 0, "at least 1"),  # none
    ],
)
def test_too_few_servers(kind: str, count: int, fragment: str | None) -> None:
    """DNS, NTP and syslog servers come in at least the policy's numbers."""
    problem = too_few_servers(kind, count, SERVICES)  # type: ignore[arg-type]
    assert (problem is None) if fragment is None else (problem is not None and fragment in problem), problem


@pytest.mark.parametrize(
    ("addresses", "count"),
    [
        (["10.0.0.1", "10.0.0.2"], 2),  # two servers
        (["10.0.0.1", "10.0.0.1"], 1),  # one server twice
        (["ntp.example.com", "NTP.example.com "], 1),  # one name in two spellings
        ([], 0),  # none
    ],
)
def test_distinct_servers(addresses: list[str], count: int) -> None:
    """A server listed twice counts once towards the guide's minimums."""
    assert distinct_servers(addresses) == count


@pytest.mark.parametrize(
    ("servers", "count"),
    [
        ([("ntp1", 1), ("ntp2", 2)], 2),  # two servers, two keys
        ([("ntp1", 1), ("ntp2", 1)], 1),  # two servers sharing one key id
        ([("ntp1", 1), ("ntp1", 2)], 1),  # one server with two keys
    ],
)
def test_distinct_ntp_servers(servers: list[tuple[str, int]], count: int) -> None:
    """NTP servers count by distinct address and distinct key id, whichever is fewer."""
    assert distinct_ntp_servers(servers) == count


@pytest.mark.parametrize(
    ("has_key", "policy", "fragment"),
    [
        (True, SERVICES, None),  # a keyed NTP server
        (False, SERVICES, "NTP server without key"),  # the guide requires the key
        (False, NO_NTP_KEYS, None),  # a policy that does not
    ],
)
def test_ntp_key_problem(has_key: bool, policy: NetworkServicesPolicy, fragment: str | None) -> None:
    """An NTP server without key authentication is refused when the policy requires keys."""
    problem = ntp_key_problem(has_key, policy)
    assert (problem is None) if fragment is None else (problem is not None and fragment in problem), problem


@pytest.mark.parametrize(
    ("community", "policy", "fragment"),
    [
        ("pexip-lab", SNMP, None),  # a site's own community
        ("public", SNMP, "other than 'public'"),  # the default the guide forbids
        ("x" * 16, SNMP, None),  # the API's longest
        ("x" * 17, SNMP, "1..16 characters (got 17 characters)"),  # one too long
        ("", SNMP, "1..16 characters (got 0 characters)"),  # empty
        ("public", dataclasses.replace(SNMP, forbidden_community="private"), None),  # the forbidden one is the policy's
        (
            "private",
            dataclasses.replace(SNMP, forbidden_community="private"),
            "other than 'private'",
        ),  # whatever it names
        ("PUBLIC", SNMP, "the default community (got 'PUBLIC')"),  # the default in capitals
        ("public ", SNMP, "the default community"),  # with a trailing space
    ],
)
def test_snmp_community_problem(community: str, policy: SnmpPolicy, fragment: str | None) -> None:
    """The SNMP community is not the forbidden default and fits the API."""
    problem = snmp_community_problem(community, policy)
    assert (problem is None) if fragment is None else (problem is not None and fragment in problem), problem


def test_validation_reports_the_rules_own_words(tmp_path: Path) -> None:
    """config validation words a bad VLAN and a short server list exactly as the rules do."""
    d = simulated_deployment(2, tmp_path)
    bad = dataclasses.replace(
        d,
        management=dataclasses.replace(d.management, vlan=4095),
        network=dataclasses.replace(d.network, dns_servers=d.network.dns_servers[:1]),
    )
    problems = dict(validate(bad))
    assert problems["management.vlan"] == vlan_problem(4095, d.policy.vlan, d.vcenter.reserved_vlans)
    assert problems["network.dns_servers"] == too_few_servers("dns", 1, d.policy.network_services)
