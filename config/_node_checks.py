"""The checks of each node and across the nodes: names, placement, addressing, sizes, VLANs.

Part of :func:`config._validate.validate`; every message reads "<problem> (got <value>); <fix>".
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections import defaultdict
from typing import Any

from config._checks import LABEL, Check, ipv4, is_fqdn, prefix_length
from config._reader import shown
from config.model import CONFERENCING, Deployment, NodeSpec, Policy
from config.rules import (
    disk_iops_limit_problem,
    iops_over_budget,
    vlan_problem,
)

__all__ = ["NodeContext", "check_node", "check_across_nodes", "CPU_RANGE", "MEMORY_MB_RANGE"]

CPU_RANGE = (2, 128)  # worker_vm vm_cpu_count
MEMORY_MB_RANGE = (2000, 64000)  # worker_vm vm_system_memory
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z")  # worker_vm name: <= 32


@dataclasses.dataclass(frozen=True)
class NodeContext:
    """What every node is checked against, computed once (a simulation has 10,000 nodes)."""

    hosts: frozenset[str] | None
    host_names: str
    reserved: frozenset[int]
    locations: frozenset[str] | None
    location_names: str
    policy: Policy

    def usable_vlan(self, vlan: Any) -> bool:
        return isinstance(vlan, int) and vlan_problem(vlan, self.policy.vlan, self.reserved) is None

    @classmethod
    def of(cls, d: Deployment) -> NodeContext:
        hosts = [h.name for h in d.vcenter.hosts] if d.vcenter and d.vcenter.hosts is not None else None
        locations = d.network.locations if d.network and d.network.locations is not None else None
        return cls(
            hosts=frozenset(hosts) if hosts is not None else None,
            host_names=", ".join(hosts or ()) or "none declared",
            reserved=frozenset(d.vcenter.reserved_vlans or ()) if d.vcenter else frozenset(),
            locations=frozenset(locations) if locations is not None else None,
            location_names=", ".join(locations or ()) or "none declared",
            policy=d.policy,
        )


def _addressing(node: NodeSpec, path: str, c: Check) -> None:
    """Address, netmask and gateway: valid IPv4, a usable mask, the gateway in the subnet."""
    address = gateway = prefix = None
    if isinstance(node.address, str):
        address = ipv4(node.address)
        if address is None:
            c.add(f"{path}.address", f"not an IPv4 address (got {shown(node.address)}); write a.b.c.d")
    if isinstance(node.netmask, str):
        prefix = prefix_length(node.netmask)
        if prefix is None or not 8 <= prefix <= 30:
            c.add(
                f"{path}.netmask",
                f"not a usable IPv4 netmask (got {shown(node.netmask)}); "
                "write a contiguous mask from 255.0.0.0 to 255.255.255.252",
            )
            prefix = None
    if isinstance(node.gateway, str):
        gateway = ipv4(node.gateway)
        if gateway is None:
            c.add(f"{path}.gateway", f"not an IPv4 address (got {shown(node.gateway)}); write a.b.c.d")
    if address is None or gateway is None or prefix is None:
        return
    host_bits = (1 << (32 - prefix)) - 1
    network = int(address) & ~host_bits
    if int(address) in (network, network | host_bits):
        c.add(
            f"{path}.address",
            f"is the network or broadcast address of its subnet /{prefix} (got {address}); use a host address",
        )
    if int(gateway) & ~host_bits != network or gateway == address:
        subnet = ipaddress.IPv4Network((network, prefix))
        c.add(f"{path}.gateway", f"not a host in the node's subnet {subnet} (got {gateway}); give the subnet's router")


def check_node(node: NodeSpec, path: str, ctx: NodeContext, c: Check) -> None:
    if isinstance(node.name, str) and not _NODE_NAME.match(node.name):
        c.add(f"{path}.name", f"bad node name (got {shown(node.name)}); use 1..32 letters, digits, '.', '_' or '-'")
    if isinstance(node.hostname, str) and not LABEL.match(node.hostname):
        c.add(
            f"{path}.hostname",
            f"bad hostname (got {shown(node.hostname)}); use one DNS label: letters, digits, '-', 1..63",
        )
    if isinstance(node.domain, str) and not is_fqdn(node.domain, 192):
        c.add(f"{path}.domain", f"bad domain (got {shown(node.domain)}); write a DNS domain such as example.com")
    _addressing(node, path, c)
    if isinstance(node.host, str) and ctx.hosts is not None and node.host not in ctx.hosts:
        c.add(f"{path}.host", f"not among vcenter.hosts (got {node.host!r}); use one of: {ctx.host_names}")
    c.text(node.portgroup, f"{path}.portgroup", "a port group name")
    if isinstance(node.vlan, int) and (message := vlan_problem(node.vlan, ctx.policy.vlan, ctx.reserved)) is not None:
        c.add(f"{path}.vlan", message)
    for key, (low, high), unit in (("cpus", CPU_RANGE, "vCPUs"), ("memory_mb", MEMORY_MB_RANGE, "MB")):
        value = getattr(node, key)
        if isinstance(value, int) and not low <= value <= high:
            c.add(f"{path}.{key}", f"out of range (got {value}); Pexip nodes take {low}..{high} {unit}")
    if (
        isinstance(node.disk_iops_limit, int)
        and (message := disk_iops_limit_problem(node.disk_iops_limit, ctx.policy.reservation)) is not None
    ):
        c.add(f"{path}.disk_iops_limit", message)
    if node.role != CONFERENCING:
        return
    if isinstance(node.location, str) and ctx.locations is not None and node.location not in ctx.locations:
        c.add(f"{path}.location", f"not in network.locations (got {node.location!r}); use one of: {ctx.location_names}")
    if isinstance(node.sip_tls_fqdn, str) and not is_fqdn(node.sip_tls_fqdn, 255):
        c.add(
            f"{path}.sip_tls_fqdn",
            f"not a DNS name (got {shown(node.sip_tls_fqdn)}); write the FQDN in the node's TLS certificate",
        )


def check_across_nodes(nodes: list[tuple[str, NodeSpec]], d: Deployment, ctx: NodeContext, c: Check) -> None:
    """Duplicates, port group VLANs per host, and IOPS per host datastore."""
    for key, what in (
        ("name", "node name"),
        ("address", "address"),
        ("hostname", "hostname"),
        ("sip_tls_fqdn", "SIP TLS FQDN"),
    ):
        first: dict[str, str] = {}
        for path, node in nodes:
            value = getattr(node, key)
            if not isinstance(value, str):
                continue
            norm = value.lower() if key != "address" else value
            if norm in first:
                c.add(
                    f"{path}.{key}",
                    f"duplicate {what} (got {value!r}, also used by {first[norm]}); give every node its own {what}",
                )
            else:
                first[norm] = path
    vlans: dict[tuple[str, str], tuple[int, str]] = {}
    for path, node in nodes:
        # A VLAN already refused by _vlan would only repeat that problem on its neighbours.
        if isinstance(node.host, str) and isinstance(node.portgroup, str) and ctx.usable_vlan(node.vlan):
            seen = vlans.setdefault((node.host, node.portgroup), (node.vlan, path))
            c.need(
                seen[0] == node.vlan,
                f"{path}.vlan",
                f"port group {node.portgroup!r} on {node.host} already has VLAN {seen[0]} for {seen[1]} (got "
                f"{node.vlan}); "
                "a port group carries one VLAN: use the same VLAN or another port group",
            )
    if not (d.vcenter and d.vcenter.hosts):
        return
    load: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for path, node in nodes:
        if isinstance(node.host, str) and isinstance(node.disk_iops_limit, int):
            load[node.host].append((path, node.disk_iops_limit))
    for i, host in enumerate(d.vcenter.hosts):
        if not isinstance(host.datastore_iops_capacity, int) or host.name not in load:
            continue
        total = iops_over_budget((iops for _, iops in load[host.name]), host.datastore_iops_capacity)
        if total is not None:
            on = [p for p, _ in load[host.name]]
            listed = ", ".join(on[:5]) + (f" and {len(on) - 5} more" if len(on) > 5 else "")
            c.add(
                f"vcenter.hosts[{i}].datastore_iops_capacity",
                f"the disk_iops_limit of the nodes on {host.name} ({listed}) add up to more than the datastore's "
                "capacity "
                f"(got {total} > {host.datastore_iops_capacity}); the guide: the sum must not exceed it, so lower "
                "the limits or move a node",
            )
