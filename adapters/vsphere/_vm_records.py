"""What the orchestrator reads of its VMs, in one batched ``RetrievePropertiesEx``, as plain records.

Also the property-collector helpers every batched read uses (``retrieve``, ``props``, ``moid``)
and the keys the orchestrator writes on its VMs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim, vmodl

from adapters.vsphere._fastprops import Devices, XmlDevice, retrieve_pages

__all__ = [
    "BIOS_KEY",
    "BRIEF_PATHS",
    "IDENTITY_FIELD",
    "IMPORT_KEY",
    "VM_PATHS",
    "DiskRecord",
    "VmBrief",
    "VmRecord",
    "last_option",
    "moid",
    "parse_brief",
    "parse_vm",
    "props",
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
    objects: list[Any] = []
    if getattr(collector._stub, "fast_reads", False):
        objects.extend(retrieve_pages(collector, spec))  # the same objects, a tenth of pyVmomi's CPU
    else:
        result = collector.RetrievePropertiesEx(specSet=[spec], options=PC.RetrieveOptions())
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
    # The pyVmomi VirtualDisk, or the XmlDevice it is built from when first needed (adapters.vsphere._fastprops).
    source: Any = field(compare=False, repr=False)

    @property
    def device(self) -> Any:
        """The pyVmomi VirtualDisk, sent back whole when edited (shared: copy it before editing)."""
        return self.source.vim if isinstance(self.source, XmlDevice) else self.source

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


def _controller_type_kind(device_type: Any) -> str:
    for cls, kind in _CONTROLLERS:
        if issubclass(device_type, cls):
            return kind
    return "other"


def _xml_disks(devices: Devices) -> tuple[DiskRecord, ...]:
    """``_disks`` of a device list read by ``_fastprops``: only the disks become pyVmomi objects, when edited."""
    controllers = {
        d.key: (_controller_type_kind(d.type), d.number("busNumber", -1))
        for d in devices
        if issubclass(d.type, vim.vm.device.VirtualController)
    }
    disks = []
    for d in devices:
        if not issubclass(d.type, vim.vm.device.VirtualDisk):
            continue
        ctrl = controllers.get(d.number("controllerKey", -1))
        has_alloc = d.text("storageIOAllocation") is not None
        has_shares = d.text("storageIOAllocation/shares") is not None
        disks.append(
            DiskRecord(
                key=d.key,
                label=d.text("deviceInfo/label") or "" if d.text("deviceInfo") is not None else f"disk {d.key}",
                datastore=d.moref("backing/datastore"),
                controller=ctrl[0] if ctrl is not None else "other",
                bus=ctrl[1] if ctrl is not None else -1,
                unit=d.number("unitNumber", -1),
                shares_level=(d.text("storageIOAllocation/shares/level") or "normal") if has_shares else "normal",
                shares=d.number("storageIOAllocation/shares/shares", 0) if has_shares else 0,
                iops_limit=d.number("storageIOAllocation/limit", -1) if has_alloc else -1,
                source=d,
            )
        )
    return tuple(disks)


def _disks(devices: Sequence[Any]) -> tuple[DiskRecord, ...]:
    if isinstance(devices, Devices):
        return _xml_disks(devices)
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
                source=d,
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
        disks=_disks(p.get("config.hardware.device") or ()),
        boot_options=p.get("config.bootOptions"),
    )
