"""Batched reads of the vSphere inventory, turned into plain records.

Every read is one ``RetrievePropertiesEx`` (plus ``ContinueRetrievePropertiesEx`` pages)
for all objects of a kind: all VMs of the datacenter at once, never attribute by
attribute (each attribute read through a pyvmomi accessor is a round trip of its own).

The records are plain frozen data. The only pyvmomi objects kept are the raw device
objects of disks and the boot options, which a reconfiguration must send back whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim, vmodl

from adapters.base import VmState
from adapters.vsphere._vm_records import (
    BIOS_KEY,
    BRIEF_PATHS,
    IDENTITY_FIELD,
    IMPORT_KEY,
    VM_PATHS,
    DiskRecord,
    VmBrief,
    VmRecord,
    last_option,
    moid,
    parse_brief,
    parse_vm,
    props,
    retrieve,
)

__all__ = [
    "BIOS_KEY",
    "BRIEF_PATHS",
    "IDENTITY_FIELD",
    "IMPORT_KEY",
    "VM_PATHS",
    "DiskRecord",
    "HostRecord",
    "Inventory",
    "PortgroupRecord",
    "VmBrief",
    "VmRecord",
    "folder_path",
    "last_option",
    "moid",
    "parse_brief",
    "parse_inventory",
    "parse_network_info",
    "parse_vm",
    "props",
    "read_inventory",
    "retrieve",
    "vm_state",
]


PC = vmodl.query.PropertyCollector


# --- hosts, datastores, networks ------------------------------------------------------


@dataclass(frozen=True)
class PortgroupRecord:
    name: str
    vlan: int
    vswitch: str


@dataclass(frozen=True)
class HostRecord:
    moref: str
    name: str
    cpu_mhz: int
    compute_resource: str | None  # moref value of the parent ComputeResource/cluster
    datastores: tuple[str, ...]  # moref values
    networks: tuple[str, ...]  # moref values
    network_system: str | None
    pnics: tuple[str, ...] = ()  # device names (vmnic0...)
    vmk_portgroups: dict[str, str] = field(default_factory=dict)  # vmk device -> portgroup
    vswitch_uplinks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # vswitch -> pnic devices
    portgroups: dict[str, PortgroupRecord] = field(default_factory=dict)
    ref: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Inventory:
    """The datacenter's hosts, compute resources, datastores and networks, by moref value."""

    datacenter: Any = field(repr=False)
    vm_folder: Any = field(repr=False)
    hosts: dict[str, HostRecord]
    resource_pools: dict[str, Any]  # compute resource moref -> its root resource pool (pyvmomi)
    datastores: dict[str, str]  # moref -> name
    datastore_refs: dict[str, Any] = field(repr=False, default_factory=dict)
    networks: dict[str, str] = field(default_factory=dict)  # moref -> name
    network_refs: dict[str, Any] = field(repr=False, default_factory=dict)

    def host_by_name(self, name: str) -> HostRecord | None:
        for host in self.hosts.values():
            if host.name == name:
                return host
        return None

    def datastore_by_name(self, name: str) -> str | None:
        for ref, ds_name in self.datastores.items():
            if ds_name == name:
                return ref
        return None

    def network_by_name(self, name: str) -> str | None:
        for ref, net_name in self.networks.items():
            if net_name == name:
                return ref
        return None


def _pnic_names(pnics: Iterable[Any]) -> dict[str, str]:
    """PhysicalNic key -> device ("key-vim.host.PhysicalNic-vmnic0" -> "vmnic0")."""
    return {p.key: p.device for p in pnics}


def parse_network_info(host_network: Any, system_network: Any) -> dict[str, Any]:
    """Merge ``host.config.network`` and ``networkSystem.networkInfo``.

    On vSphere both hold the same data. vcsim keeps VMkernel NICs and physical NICs
    only in the former and portgroups added later (with their VLANs) only in the
    latter, so each item is taken from whichever holds it, the network system first.
    """
    sources = [s for s in (system_network, host_network) if s is not None]
    pnics: dict[str, str] = {}
    for src in reversed(sources):
        pnics.update(_pnic_names(src.pnic or ()))
    vmk: dict[str, str] = {}
    for src in reversed(sources):
        for vnic in src.vnic or ():
            vmk[vnic.device] = vnic.portgroup or (vnic.spec.portgroup if vnic.spec else "")
    uplinks: dict[str, tuple[str, ...]] = {}
    for src in reversed(sources):
        for vswitch in src.vswitch or ():
            devices = tuple(pnics.get(k, k.rsplit("-", 1)[-1]) for k in vswitch.pnic or ())
            if devices or vswitch.name not in uplinks:
                uplinks[vswitch.name] = devices
    portgroups: dict[str, PortgroupRecord] = {}
    for src in reversed(sources):
        for pg in src.portgroup or ():
            spec = pg.spec
            portgroups[spec.name] = PortgroupRecord(name=spec.name, vlan=int(spec.vlanId), vswitch=spec.vswitchName)
            uplinks.setdefault(spec.vswitchName, ())
    return {
        "pnics": tuple(sorted(set(pnics.values()))),
        "vmk_portgroups": vmk,
        "vswitch_uplinks": uplinks,
        "portgroups": portgroups,
    }


def parse_inventory(
    datacenter: Any, dc_props: dict[str, Any], objects: Sequence[Any], network_infos: dict[str, Any]
) -> Inventory:
    """Records from the one-call traversal of the datacenter (see ``VCenter._read_inventory``)."""
    hosts: dict[str, HostRecord] = {}
    pools: dict[str, Any] = {}
    datastores: dict[str, str] = {}
    ds_refs: dict[str, Any] = {}
    networks: dict[str, str] = {}
    net_refs: dict[str, Any] = {}
    host_contents = []
    for obj in objects:
        p = props(obj)
        ref = obj.obj
        if isinstance(ref, vim.HostSystem):
            host_contents.append((obj, p))
        elif isinstance(ref, vim.ComputeResource):
            if p.get("resourcePool") is not None:
                pools[moid(ref)] = p["resourcePool"]
        elif isinstance(ref, vim.Datastore):
            datastores[moid(ref)] = p.get("name", "")
            ds_refs[moid(ref)] = ref
        elif isinstance(ref, vim.Network):
            networks[moid(ref)] = p.get("name", "")
            net_refs[moid(ref)] = ref
    for obj, p in host_contents:
        ref = obj.obj
        net_system = p.get("configManager.networkSystem")
        info = parse_network_info(p.get("config.network"), network_infos.get(moid(net_system)) if net_system else None)
        parent = p.get("parent")
        hosts[moid(ref)] = HostRecord(
            moref=moid(ref),
            name=p.get("name", ""),
            cpu_mhz=int(p.get("summary.hardware.cpuMhz") or 0),
            compute_resource=moid(parent) if parent is not None else None,
            datastores=tuple(moid(d) for d in p.get("datastore") or ()),
            networks=tuple(moid(n) for n in p.get("network") or ()),
            network_system=moid(net_system) if net_system is not None else None,
            ref=ref,
            **info,
        )
    return Inventory(
        datacenter=datacenter,
        vm_folder=dc_props.get("vmFolder"),
        hosts=hosts,
        resource_pools=pools,
        datastores=datastores,
        datastore_refs=ds_refs,
        networks=networks,
        network_refs=net_refs,
    )


def folder_path(datacenter: str, folder: str) -> str | None:
    """``vcenter.folder`` as an inventory path below the datacenter's VM folder ("pexip",
    "vm/pexip" and "DC0/vm/pexip" alike); ``None`` for the VM folder itself."""
    dc_path = datacenter.strip("/")
    folder = folder.strip().strip("/")
    if folder.startswith(dc_path + "/"):
        folder = folder[len(dc_path) + 1 :]
    if folder == "vm" or folder.startswith("vm/"):
        folder = folder[3:]
    return f"{dc_path}/vm/{folder}" if folder else None


def read_inventory(content: Any, datacenter: str, folder: str) -> tuple[Inventory | None, Any]:
    """The datacenter's hosts, compute resources, datastores and networks in one traversal,
    the hosts' network systems in a second read, and the VM folder (``None``: not found).

    Returns ``(None, None)`` when the datacenter does not exist. Runs in a worker thread.
    """
    dc_path = datacenter.strip("/")
    dc = content.searchIndex.FindByInventoryPath(inventoryPath=dc_path)
    if not isinstance(dc, vim.Datacenter):
        return None, None
    select = [
        PC.TraversalSpec(
            name="dcHost",
            type=vim.Datacenter,
            path="hostFolder",
            skip=False,
            selectSet=[PC.SelectionSpec(name="folderChild")],
        ),
        PC.TraversalSpec(name="dcDs", type=vim.Datacenter, path="datastore", skip=False),
        PC.TraversalSpec(name="dcNet", type=vim.Datacenter, path="network", skip=False),
        PC.TraversalSpec(
            name="folderChild",
            type=vim.Folder,
            path="childEntity",
            skip=False,
            selectSet=[PC.SelectionSpec(name="folderChild"), PC.SelectionSpec(name="crHost")],
        ),
        PC.TraversalSpec(name="crHost", type=vim.ComputeResource, path="host", skip=False),
    ]
    objects = retrieve(
        content,
        [PC.ObjectSpec(obj=dc, skip=False, selectSet=select)],
        [
            PC.PropertySpec(type=vim.Datacenter, pathSet=["vmFolder"]),
            PC.PropertySpec(
                type=vim.HostSystem,
                pathSet=[
                    "name",
                    "summary.hardware.cpuMhz",
                    "parent",
                    "datastore",
                    "network",
                    "configManager.networkSystem",
                    "config.network",
                ],
            ),
            PC.PropertySpec(type=vim.ComputeResource, pathSet=["resourcePool"]),
            PC.PropertySpec(type=vim.Datastore, pathSet=["name"]),
            PC.PropertySpec(type=vim.Network, pathSet=["name"]),
        ],
    )
    dc_props = next((props(o) for o in objects if isinstance(o.obj, vim.Datacenter)), {})
    net_systems = [
        p["configManager.networkSystem"]
        for o in objects
        if isinstance(o.obj, vim.HostSystem)
        for p in [props(o)]
        if p.get("configManager.networkSystem") is not None
    ]
    infos: dict[str, Any] = {}
    if net_systems:
        for o in retrieve(
            content,
            [PC.ObjectSpec(obj=n) for n in net_systems],
            [PC.PropertySpec(type=vim.host.NetworkSystem, pathSet=["networkInfo"])],
        ):
            infos[moid(o.obj)] = props(o).get("networkInfo")
    inv = parse_inventory(dc, dc_props, objects, infos)
    path = folder_path(dc_path, folder)
    vm_folder = inv.vm_folder if path is None else content.searchIndex.FindByInventoryPath(inventoryPath=path)
    return inv, vm_folder if isinstance(vm_folder, vim.Folder) else None


def vm_state(rec: VmBrief, inv: Inventory) -> VmState:
    """What the steps see of a VM: its brief, with the host's and the portgroup's names from the inventory."""
    host = inv.hosts.get(rec.host or "")
    portgroup = next((inv.networks.get(n, n) for n in rec.network_refs), None)
    return VmState(
        name=rec.name,
        identity=rec.identity or "",
        moref=rec.moref,
        host=host.name if host is not None else (rec.host or ""),
        portgroup=portgroup,
        power_state=rec.power_state,  # type: ignore[arg-type]
        num_cpus=rec.num_cpus,
        memory_mb=rec.memory_mb,
    )
