"""simulated_deployment: quick at 10,000 nodes, valid by the same rules as a file, stable secrets."""

from __future__ import annotations

import dataclasses
import stat

import pytest

from config.errors import ConfigError
from config.load import simulated_deployment, unavailable_secrets, validate


def test_ten_thousand_nodes_are_valid(tmp_path):
    """10,000 nodes pass validate() and the secrets check (how fast: bench/simulate_bench.py, not a timed test)."""
    d = simulated_deployment(10_000, tmp_path)
    assert len(d.nodes) == 10_000 and d.management.role == "management"
    assert all(n.role == "conferencing" for n in d.conferencing)
    assert len(d.vcenter.hosts) == 200 and d.vcenter.hosts[0].name == "esxi-01"
    assert validate(d) == []
    assert unavailable_secrets(d) == []


@pytest.mark.parametrize(
    ("nodes", "hosts"),
    [
        (1, 1),  # the management node alone
        (50, 1),  # exactly one host full
        (51, 2),  # one more spills to a second host
        (237, 5),  # ceil(237 / 50)
    ],
)
def test_nodes_spread_over_ceil_n_over_50_hosts(tmp_path, nodes, hosts):
    """Nodes fill simulated hosts 50 at a time, every one on a declared host and within its IOPS."""
    d = simulated_deployment(nodes, tmp_path)
    assert len(d.vcenter.hosts) == hosts
    per_host = {h.name: 0 for h in d.vcenter.hosts}
    for n in d.nodes:
        per_host[n.host] += 1
    assert max(per_host.values()) <= 50 and sum(per_host.values()) == nodes
    assert validate(d) == []


def test_everything_is_simulated_and_secure_by_the_policy(tmp_path):
    """Every system is in sim mode, on VLAN 100, with the network services the guide asks for."""
    d = simulated_deployment(10, tmp_path, latency=0.25, faults="exit=0.01")
    assert {d.vcenter.mode, d.pexip_api.mode, d.console.mode, d.ldap.mode, d.pki.mode} == {"sim"}
    assert {n.vlan for n in d.nodes} == {100}
    assert len(d.network.dns_servers) >= 2 and len(d.network.ntp_servers) >= 2
    assert all(s.key is not None for s in d.network.ntp_servers)
    assert [s.transport for s in d.network.syslog_servers] == ["tls"]
    assert d.snmp.community != "public"
    assert (d.simulation.latency, d.simulation.faults) == (0.25, "exit=0.01")


def test_secrets_are_files_made_once_and_reused(tmp_path):
    """Secret files are 0600, random, and the same on a second call (a resumed simulation)."""
    first = simulated_deployment(3, tmp_path)
    values = [s.reveal() for s in first.secrets()]
    files = sorted((tmp_path / "secrets").iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert all(s.ref.startswith("file:") for s in first.secrets())
    assert len(set(values)) == len(values) and all(len(v) >= 20 for v in values)
    again = simulated_deployment(3, tmp_path)
    assert [s.reveal() for s in again.secrets()] == values
    other = simulated_deployment(3, tmp_path / "other")
    assert [s.reveal() for s in other.secrets()] != values


def test_validate_judges_a_simulated_deployment_like_a_file(tmp_path):
    """A simulated deployment broken by hand gets the same problems a file would."""
    d = simulated_deployment(5, tmp_path)
    broken = dataclasses.replace(
        d, conferencing=(dataclasses.replace(d.conferencing[0], vlan=4095), *d.conferencing[1:])
    )
    fields = [f for f, _ in validate(broken)]
    assert fields == ["conferencing[0].vlan"]


@pytest.mark.parametrize(
    ("nodes", "latency", "field"),
    [
        (0, 0.0, "nodes"),  # no node at all
        (-3, 0.0, "nodes"),  # negative
        (10, -1.0, "latency"),  # latency cannot be negative
    ],
)
def test_bad_arguments_are_config_errors(tmp_path, nodes, latency, field):
    """Out-of-range arguments raise ConfigError naming the argument."""
    with pytest.raises(ConfigError) as caught:
        simulated_deployment(nodes, tmp_path, latency=latency)
    assert [f for f, _ in caught.value.problems] == [field]
