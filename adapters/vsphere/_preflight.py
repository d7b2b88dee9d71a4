"""Preflight: every problem of the declared deployment against the real inventory.

A pure function over plain records (:mod:`adapters.vsphere._inventory`): the adapter
reads, this module judges. Field names are dotted like the config loader's
(``management.vlan``, ``conferencing[1].portgroup``, ``vcenter.hosts[0].datastore``),
and every message names the object, the value found and the fix.

The rules come from the guide: "Securing the host environment" (two physical NICs,
management apart from the VMs' network), the deployment sections (VLAN not 4095, not
reserved) and "Disk resource limits" (IOPS limits within the datastore's capacity); the
last two are :mod:`config.rules`, with the policy's VLAN range.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.vsphere._inventory import HostRecord, Inventory, VmRecord
from adapters.vsphere._keys import password_keys
from adapters.vsphere._ova import read_package
from config.errors import ConfigError
from config.model import Deployment, HostSpec, NodeSpec
from config.rules import iops_in_use, iops_over_budget, vlan_problem

__all__ = ["MIN_PHYSICAL_NICS", "check", "identity_of", "local_problems", "node_field"]

MIN_PHYSICAL_NICS = 2

Problems = list[tuple[str, str]]


def identity_of(deployment: Deployment, node: NodeSpec) -> str:
    """The identity custom attribute of a node's VM: ``"<deployment>/<node>"``."""
    return f"{deployment.name}/{node.name}"


def node_field(deployment: Deployment, node: NodeSpec) -> str:
    """``management`` or ``conferencing[i]``: where a node sits in the deployment file."""
    if node is deployment.management or node.name == deployment.management.name:
        return "management"
    for i, n in enumerate(deployment.conferencing):
        if n.name == node.name:
            return f"conferencing[{i}]"
    return node.name


def _vswitch_of(host: HostRecord, network: str) -> str | None:
    """The vSwitch a name denotes: a vSwitch itself or the vSwitch of a portgroup."""
    if network in host.vswitch_uplinks:
        return network
    pg = host.portgroups.get(network)
    return pg.vswitch if pg is not None else None


def _check_host(i: int, spec: HostSpec, host: HostRecord, inv: Inventory) -> Problems:
    f = f"vcenter.hosts[{i}]"
    problems: Problems = []
    ds_names = {inv.datastores.get(ref, ref) for ref in host.datastores}
    if spec.datastore not in ds_names:
        problems.append(
            (
                f"{f}.datastore",
                f"datastore {spec.datastore!r} is not mounted on host {spec.name} "
                f"(it has: {', '.join(sorted(ds_names)) or 'none'}); name one of those",
            )
        )
    if len(host.pnics) < MIN_PHYSICAL_NICS:
        problems.append(
            (
                f,
                f"host {spec.name} has {len(host.pnics)} physical NIC(s) ({', '.join(host.pnics) or 'none'}); "
                f"the guide requires at least {MIN_PHYSICAL_NICS}, management apart from the VMs' network",
            )
        )
    mgmt_pg = spec.management_network
    vmk0 = host.vmk_portgroups.get("vmk0")
    if mgmt_pg not in host.portgroups:
        problems.append(
            (
                f"{f}.management_network",
                f"portgroup {mgmt_pg!r} does not exist on host {spec.name} "
                f"(portgroups: {', '.join(sorted(host.portgroups)) or 'none'}); name the VMkernel management portgroup",
            )
        )
    elif vmk0 is not None and vmk0 != mgmt_pg:
        problems.append(
            (
                f"{f}.management_network",
                f"host {spec.name}'s management VMkernel NIC vmk0 is on portgroup "
                f"{vmk0!r}, not {mgmt_pg!r}; name {vmk0!r} here",
            )
        )
    mgmt_switch = _vswitch_of(host, mgmt_pg)
    vm_switch = _vswitch_of(host, spec.vm_network)
    if vm_switch is None:
        problems.append(
            (
                f"{f}.vm_network",
                f"{spec.vm_network!r} is neither a vSwitch nor a portgroup on host {spec.name}; "
                "name the vSwitch (or a portgroup of it) that carries the Pexip VMs' traffic",
            )
        )
    elif spec.vm_network == mgmt_pg:
        problems.append(
            (
                f"{f}.vm_network",
                f"the VMs' network is the management portgroup {mgmt_pg!r}; "
                "the guide requires them apart: use a portgroup on another vSwitch",
            )
        )
    elif mgmt_switch is not None and vm_switch == mgmt_switch:
        problems.append(
            (
                f"{f}.vm_network",
                f"the VMs' network {spec.vm_network!r} is on vSwitch {vm_switch!r} with the "
                f"management network {mgmt_pg!r}; put the VMs on a separate vSwitch and physical NIC",
            )
        )
    elif mgmt_switch is not None:
        shared = set(host.vswitch_uplinks.get(vm_switch, ())) & set(host.vswitch_uplinks.get(mgmt_switch, ()))
        if shared:
            problems.append(
                (
                    f"{f}.vm_network",
                    f"vSwitches {vm_switch!r} and {mgmt_switch!r} share physical NIC(s) "
                    f"{', '.join(sorted(shared))}; the VMs' and the management traffic must use separate NICs",
                )
            )
    return problems


def _check_node(deployment: Deployment, node: NodeSpec, inv: Inventory, vms: Mapping[str, VmRecord]) -> Problems:
    f = node_field(deployment, node)
    problems: Problems = []
    vlans, reserved = deployment.policy.vlan, set(deployment.vcenter.reserved_vlans)
    if (message := vlan_problem(node.vlan, vlans, reserved)) is not None:
        problems.append((f"{f}.vlan", message))
    try:
        spec = deployment.host(node.host)
    except KeyError:
        problems.append(
            (
                f"{f}.host",
                f"host {node.host!r} is not in vcenter.hosts; name one of "
                f"{', '.join(h.name for h in deployment.vcenter.hosts)}",
            )
        )
        return problems
    host = inv.host_by_name(node.host)
    if host is None:
        return problems  # reported once for the host
    pg = host.portgroups.get(node.portgroup)
    if pg is None:
        problems.append(
            (
                f"{f}.portgroup",
                f"portgroup {node.portgroup!r} does not exist on host {node.host} "
                f"(portgroups: {', '.join(sorted(host.portgroups)) or 'none'}); create it with VLAN {node.vlan} or "
                "name another",
            )
        )
    else:
        if pg.vlan != node.vlan:
            problems.append(
                (
                    f"{f}.vlan",
                    f"portgroup {node.portgroup!r} on host {node.host} carries VLAN {pg.vlan}, "
                    f"not {node.vlan}; make them agree",
                )
            )
            if (message := vlan_problem(pg.vlan, vlans, reserved)) is not None:
                problems.append((f"{f}.portgroup", f"portgroup {node.portgroup!r}: {message}"))
        mgmt_switch = _vswitch_of(host, spec.management_network)
        if pg.name == spec.management_network or (mgmt_switch is not None and pg.vswitch == mgmt_switch):
            problems.append(
                (
                    f"{f}.portgroup",
                    f"portgroup {node.portgroup!r} is on vSwitch {pg.vswitch!r} with the "
                    f"host's management network; use a portgroup of {spec.vm_network!r}",
                )
            )
        else:
            vm_switch = _vswitch_of(host, spec.vm_network)
            if vm_switch is not None and pg.vswitch != vm_switch:
                problems.append(
                    (
                        f"{f}.portgroup",
                        f"portgroup {node.portgroup!r} is on vSwitch {pg.vswitch!r}, not on "
                        f"the VMs' network {spec.vm_network!r} ({vm_switch}); use a portgroup of {vm_switch!r}",
                    )
                )
        if inv.network_by_name(node.portgroup) is None:
            problems.append(
                (
                    f"{f}.portgroup",
                    f"portgroup {node.portgroup!r} has no network in datacenter "
                    f"{deployment.vcenter.datacenter!r}; VMs cannot be connected to it",
                )
            )
    ours = identity_of(deployment, node)
    for vm in vms.values():
        if vm.name == node.name and vm.identity != ours and vm.import_identity != ours:
            problems.append(
                (
                    f"{f}.name",
                    f"a VM named {node.name!r} ({vm.moref}) exists that this deployment did not "
                    f"create (identity: {vm.identity or 'none'}); it is never adopted: rename or remove it, or rename "
                    "the node",
                )
            )
    return problems


def _check_iops(deployment: Deployment, inv: Inventory, vms: Mapping[str, VmRecord]) -> Problems:
    problems: Problems = []
    ours = {identity_of(deployment, n): n for n in deployment.nodes}
    for i, spec in enumerate(deployment.vcenter.hosts):
        ds_ref = inv.datastore_by_name(spec.datastore)
        if ds_ref is None:
            continue
        same_ds = {h.name for h in deployment.vcenter.hosts if h.datastore == spec.datastore}
        ours_total = 0
        deployed: set[str] = set()
        for vm in vms.values():
            node = ours.get(vm.identity or vm.import_identity or "")
            if node is not None and node.host in same_ds:
                deployed.add(node.name)
                ours_total += node.disk_iops_limit * max(1, sum(1 for d in vm.disks if d.datastore == ds_ref))
        # A node not yet deployed brings the one disk of the Pexip OVAs.
        ours_total += sum(n.disk_iops_limit for n in deployment.nodes if n.host in same_ds and n.name not in deployed)
        others = iops_in_use(
            d.iops_limit
            for vm in vms.values()
            if (vm.identity or vm.import_identity or "") not in ours
            for d in vm.disks
            if d.datastore == ds_ref
        )
        total = iops_over_budget((ours_total, others), spec.datastore_iops_capacity)
        if total is not None:
            problems.append(
                (
                    f"vcenter.hosts[{i}].datastore_iops_capacity",
                    f"on datastore {spec.datastore!r} the Pexip nodes' IOPS limits ({ours_total}) plus the other VMs' "
                    f"({others}) come to {total}, above its capacity {spec.datastore_iops_capacity}; "
                    "lower the nodes' disk_iops_limit or the other VMs' limits",
                )
            )
    return problems


def check(
    deployment: Deployment,
    inv: Inventory | None,
    vms: Mapping[str, VmRecord],
    *,
    folder_found: bool,
) -> Problems:
    """Every problem found, as ``(field, message)``; empty when the deployment may go ahead.

    ``inv`` is ``None`` when the datacenter itself was not found.
    """
    vc = deployment.vcenter
    if inv is None:
        return [
            ("vcenter.datacenter", f"datacenter {vc.datacenter!r} not found in vCenter {vc.url}; name an existing one")
        ]
    problems: Problems = []
    if not folder_found:
        problems.append(
            (
                "vcenter.folder",
                f"VM folder {vc.folder!r} not found in datacenter {vc.datacenter!r}; "
                "create it or name an existing one (a path below the datacenter's VM folder)",
            )
        )
    for i, spec in enumerate(vc.hosts):
        host = inv.host_by_name(spec.name)
        if host is None:
            names = sorted(h.name for h in inv.hosts.values())
            problems.append(
                (
                    f"vcenter.hosts[{i}].name",
                    f"host {spec.name!r} not found in datacenter {vc.datacenter!r} "
                    f"(hosts: {', '.join(names) or 'none'}); name one of those",
                )
            )
            continue
        problems.extend(_check_host(i, spec, host, inv))
    for node in deployment.nodes:
        problems.extend(_check_node(deployment, node, inv, vms))
    problems.extend(_check_iops(deployment, inv, vms))
    return problems


def local_problems(deployment: Deployment) -> Problems:
    """What the preflight checks without vCenter: the OVA files and the BIOS password's characters."""
    problems: Problems = []
    for field_name, location in (
        ("ova.management", deployment.ova.management),
        ("ova.conferencing", deployment.ova.conferencing),
    ):
        if field_name == "ova.conferencing" and not deployment.conferencing:
            continue
        try:
            read_package(location, field_name)
        except ConfigError as exc:
            problems.extend(exc.problems)
    bios = deployment.bios
    if bios.password_method == "keystrokes":
        try:
            if bios.password is None:
                raise ConfigError(
                    'bios.password is not set; keystrokes need it (or set bios.password_method = "operator")',
                    "bios.password",
                )
            password_keys(bios.password.reveal())
        except ConfigError as exc:
            problems.extend(exc.problems)
        except (KeyError, OSError) as exc:
            problems.append(("bios.password", f"cannot read {bios.password.ref if bios.password else ''}: {exc}"))
    return problems
