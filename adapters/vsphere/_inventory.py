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
]

# Custom attributes (custom fields) the orchestrator sets on its VMs.
IDENTITY_FIELD = "pexip-orchestrator.identity"  # "<deployment>/<node>", set once the import completed
# extraConfig keys: written in the same call as the change they mark, so no crash can
# separate the two.
IMPORT_KEY = "pexip-orchestrator.identity"  # in the import spec: the VM is born with it
BIOS_KEY = "pexip-orchestrator.bios_lock"  # "typing" before the keystrokes, "done" after

# What finding a VM takes, for every VM of the datacenter: a few small values each.
BRIEF_PATHS = [
    "name",
    "customValue",
    "runtime.powerState",
    "runtime.host",
    "datastore",
    "network",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
]
# Everything the steps observe of one VM (its devices are most of the bytes).
VM_PATHS = [
    *BRIEF_PATHS,
    "config.hardware.device",
    "config.cpuAllocation",
    "config.memoryAllocation",
    "config.memoryReservationLockedToMax",
    "config.bootOptions",
    "config.extraConfig",
]

PC = vmodl.query.PropertyCollector


def moid(obj: Any) -> str:
    """The moref value ("vm-42") of a pyvmomi managed object."""
    return str(obj._moId)


def retrieve(
    content: Any, object_specs: Sequence[Any], prop_specs: Sequence[Any], *, report_missing: bool = False
) -> list[Any]:
    """One ``RetrievePropertiesEx`` (and its pages): a list of ``ObjectContent``.

    Properties that vCenter withholds because the session is gone come back as
    ``missingSet`` entries on some servers (vcsim) instead of a fault: they are raised
    as the ``NotAuthenticated`` fault they are, so that the session logs in again.
    """
    collector = content.propertyCollector
    spec = PC.FilterSpec(
        objectSet=list(object_specs), propSet=list(prop_specs), reportMissingObjectsInResults=report_missing
    )
    result = collector.RetrievePropertiesEx(specSet=[spec], options=PC.RetrieveOptions())
    objects: list[Any] = []
    while result is not None:
        objects.extend(result.objects or ())
        if not result.token:
            break
        result = collector.ContinueRetrievePropertiesEx(token=result.token)
    for obj in objects:
        for missing in obj.missingSet or ():
            fault = missing.fault
            if isinstance(fault, vim.fault.NotAuthenticated):
                raise fault
    return objects


def props(obj_content: Any) -> dict[str, Any]:
    return {p.name: p.val for p in obj_content.propSet or ()}


def last_option(options: Iterable[Any] | None, key: str) -> str | None:
    """The value of ``key`` in an OptionValue list; the last one wins (vcsim appends
    duplicates when a key is set again)."""
    value = None
    for option in options or ():
        if option.key == key:
            value = option.value
    return None if value is None else str(value)


# --- VMs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskRecord:
    key: int
    label: str
    datastore: str | None  # moref value
    controller: str  # "scsi" | "ide" | "sata" | "nvme" | "other"
    bus: int
    unit: int
    shares_level: str
    shares: int
    iops_limit: int  # -1: unlimited
    device: Any = field(compare=False, repr=False)  # the pyvmomi VirtualDisk, sent back whole when edited

    @property
    def is_boot_disk(self) -> bool:
        """SCSI (0:0): the disk the guide puts first in the boot order."""
        return self.controller == "scsi" and self.bus == 0 and self.unit == 0


@dataclass(frozen=True)
class VmBrief:
    """What every VM shows cheaply: enough to find ours and to place it."""

    moref: str
    name: str
    custom: dict[str, str]  # custom attributes by field name (last value wins)
    power_state: str
    host: str | None  # moref value
    num_cpus: int
    memory_mb: int
    datastores: tuple[str, ...] = ()  # moref values of the datastores it uses
    network_refs: tuple[str, ...] = ()  # moref values of its networks
    fetched_at: float = 0.0  # time.monotonic() when the read that made it started
    ref: Any = field(default=None, compare=False, repr=False)

    @property
    def identity(self) -> str | None:
        """Our identity, only once the import completed (the custom attribute)."""
        return self.custom.get(IDENTITY_FIELD)


@dataclass(frozen=True)
class VmRecord(VmBrief):
    """Everything the steps observe of one VM."""

    import_identity: str | None = None  # extraConfig IMPORT_KEY
    bios_lock: str | None = None  # extraConfig BIOS_KEY
    cpu_allocation: Any = field(default=None, repr=False)
    memory_allocation: Any = field(default=None, repr=False)
    memory_locked: bool = False
    disks: tuple[DiskRecord, ...] = ()
    boot_options: Any = field(default=None, repr=False)


_CONTROLLERS: tuple[tuple[type, str], ...] = (
    (vim.vm.device.VirtualSCSIController, "scsi"),
    (vim.vm.device.VirtualIDEController, "ide"),
    (vim.vm.device.VirtualAHCIController, "sata"),
    (vim.vm.device.VirtualNVMEController, "nvme"),
)


def _controller_kind(device: Any) -> str:
    for cls, kind in _CONTROLLERS:
        if isinstance(device, cls):
            return kind
    return "other"


def _disks(devices: Sequence[Any]) -> tuple[DiskRecord, ...]:
    controllers = {d.key: d for d in devices if isinstance(d, vim.vm.device.VirtualController)}
    disks = []
    for d in devices:
        if not isinstance(d, vim.vm.device.VirtualDisk):
            continue
        ctrl = controllers.get(d.controllerKey) if d.controllerKey is not None else None
        alloc = d.storageIOAllocation
        shares = alloc.shares if alloc is not None else None
        backing_ds = getattr(d.backing, "datastore", None)
        disks.append(
            DiskRecord(
                key=d.key,
                label=d.deviceInfo.label if d.deviceInfo is not None else f"disk {d.key}",
                datastore=moid(backing_ds) if backing_ds is not None else None,
                controller=_controller_kind(ctrl) if ctrl is not None else "other",
                bus=getattr(ctrl, "busNumber", -1) if ctrl is not None else -1,
                unit=d.unitNumber if d.unitNumber is not None else -1,
                shares_level=str(shares.level) if shares is not None else "normal",
                shares=shares.shares if shares is not None else 0,
                iops_limit=alloc.limit if alloc is not None and alloc.limit is not None else -1,
                device=d,
            )
        )
    return tuple(disks)


def _brief_values(
    obj_content: Any, field_names: dict[int, str], fetched_at: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    p = props(obj_content)
    custom: dict[str, str] = {}
    for value in p.get("customValue") or ():
        name = field_names.get(value.key)
        if name is not None:
            custom[name] = getattr(value, "value", "")
    host = p.get("runtime.host")
    values = {
        "moref": moid(obj_content.obj),
        "name": p.get("name") or "",
        "custom": custom,
        "power_state": str(p.get("runtime.powerState") or "poweredOff"),
        "host": moid(host) if host is not None else None,
        "num_cpus": int(p.get("config.hardware.numCPU") or 0),
        "memory_mb": int(p.get("config.hardware.memoryMB") or 0),
        "datastores": tuple(moid(d) for d in p.get("datastore") or ()),
        "network_refs": tuple(moid(n) for n in p.get("network") or ()),
        "fetched_at": fetched_at,
        "ref": obj_content.obj,
    }
    return values, p


def parse_brief(obj_content: Any, field_names: dict[int, str], fetched_at: float) -> VmBrief:
    """A VM's ``ObjectContent`` (``BRIEF_PATHS``); ``field_names``: custom field key -> name."""
    values, _ = _brief_values(obj_content, field_names, fetched_at)
    return VmBrief(**values)


def parse_vm(obj_content: Any, field_names: dict[int, str], fetched_at: float) -> VmRecord:
    """A VM's ``ObjectContent`` (``VM_PATHS``) as a record; ``field_names``: custom field key -> name."""
    values, p = _brief_values(obj_content, field_names, fetched_at)
    extra = p.get("config.extraConfig")
    return VmRecord(
        **values,
        import_identity=last_option(extra, IMPORT_KEY),
        bios_lock=last_option(extra, BIOS_KEY),
        cpu_allocation=p.get("config.cpuAllocation"),
        memory_allocation=p.get("config.memoryAllocation"),
        memory_locked=bool(p.get("config.memoryReservationLockedToMax")),
        disks=_disks(list(p.get("config.hardware.device") or ())),
        boot_options=p.get("config.bootOptions"),
    )


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
