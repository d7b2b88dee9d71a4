"""Importing an OVA as a node's VM: placement, the import spec, the lease, the identity; and finding it again.

:meth:`adapters.vsphere.VCenter.import_ova` and :meth:`~adapters.vsphere.VCenter.find_vm` (see their docstrings);
kept apart so the facade
stays small. It works through the adapter's own reads, writes and uploads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyVmomi import vim

from adapters.base import VmState
from adapters.vsphere._inventory import IDENTITY_FIELD, IMPORT_KEY, VmBrief, VmRecord, moid, vm_state
from adapters.vsphere._ova import ovf_networks, read_package
from adapters.vsphere._session import SYSTEM
from config.errors import ConfigError, Rejected
from config.model import MANAGEMENT, NodeSpec

if TYPE_CHECKING:
    from adapters.vsphere._vcenter import VCenter

__all__ = ["find_vm", "import_ova"]


async def find_vm(vc: VCenter, node: NodeSpec, identity: str) -> VmState | None:
    """:meth:`VCenter.find_vm`."""
    vms = await vc._reads.named(identity=identity, name=node.name)
    ours = [b for b in vms if b.identity == identity]
    if len(ours) > 1:
        raise Rejected(
            f"VMs {', '.join(b.name + ' (' + b.moref + ')' for b in ours)} all carry identity {identity!r}; "
            "remove the extra ones",
            system=SYSTEM,
        )
    if ours:
        inv, _ = await vc._inventory()
        return vm_state(ours[0], inv)
    await _namesakes(vc, node, identity, vms)
    return None


async def import_ova(vc: VCenter, node: NodeSpec, identity: str, ova: str) -> VmState:
    """:meth:`VCenter.import_ova`."""
    field_name = "ova.management" if node.role == MANAGEMENT else "ova.conferencing"
    package = read_package(ova, field_name)
    networks = ovf_networks(package.descriptor)
    inv, folder = await vc._inventory()
    host = inv.host_by_name(node.host)
    try:
        host_spec = next(h for h in vc.spec.hosts if h.name == node.host)
    except StopIteration:
        raise ConfigError(f"host {node.host!r} of node {node.name} is not in vcenter.hosts", "vcenter.hosts") from None
    if host is None:
        raise ConfigError(f"host {node.host!r} not found in datacenter {vc.spec.datacenter!r}", "vcenter.hosts")
    ds_ref = inv.datastore_by_name(host_spec.datastore)
    net_ref = inv.network_by_name(node.portgroup)
    pool = inv.resource_pools.get(host.compute_resource or "")
    if ds_ref is None or net_ref is None or pool is None or folder is None:
        raise ConfigError(
            f"cannot place {node.name}: datastore {host_spec.datastore!r}, portgroup {node.portgroup!r}, "
            f"folder {vc.spec.folder!r} and the host's resource pool must all exist; run the preflight",
            "vcenter",
        )

    vms = await vc._reads.named(identity=identity, name=node.name)
    for brief in vms:
        if brief.identity == identity:
            return vm_state(brief, inv)  # already imported: nothing to do
    for rec in await _namesakes(vc, node, identity, vms):
        await _destroy_incomplete(vc, rec)

    def create_spec(content: Any) -> Any:
        cisp = vim.OvfManager.CreateImportSpecParams(
            entityName=node.name,
            networkMapping=[vim.OvfManager.NetworkMapping(name=n, network=inv.network_refs[net_ref]) for n in networks],
        )
        return content.ovfManager.CreateImportSpec(
            ovfDescriptor=package.descriptor, resourcePool=pool, datastore=inv.datastore_refs[ds_ref], cisp=cisp
        )

    with vc._in_flight.track():
        result = await vc._session.call(f"create the import spec of {node.name}", create_spec)
    if result.error:
        raise Rejected(
            f"vCenter cannot import {ova} as {node.name}: "
            + "; ".join(getattr(e, "msg", None) or type(e).__name__ for e in result.error),
            system=SYSTEM,
        )
    spec = result.importSpec
    config = spec.configSpec
    config.extraConfig = [*(config.extraConfig or ()), vim.option.OptionValue(key=IMPORT_KEY, value=identity)]
    # The VM is added to the kept briefs once tagged (found by its identity from then on); until
    # then it is a namesake the next lookup must see, so any failure forgets every kept brief.
    lease = await vc._write(
        f"import {node.name}",
        lambda c: pool.ImportVApp(spec=spec, folder=folder, host=host.ref),
        keeps_briefs=True,
    )
    try:
        vm_ref = await vc._uploads.run(lease, package, result.fileItem or (), node.name)
        key = await vc._fields.key(IDENTITY_FIELD)
    except BaseException:
        vc._reads.forget()
        raise
    try:
        await vc._write(
            f"tag {node.name} with its identity",
            lambda c: c.customFieldsManager.SetField(entity=vm_ref, key=key, value=identity),
            keeps_briefs=True,
        )  # a VM of ours appears
    except BaseException:
        vc._fields.forget(IDENTITY_FIELD)  # the field may be gone: read it again next time
        raise
    vc._reads.added(moid(vm_ref), node.name, identity)
    # Built from what was imported, not read back: the step verifies with find_vm.
    return VmState(
        name=node.name,
        identity=identity,
        moref=moid(vm_ref),
        host=node.host,
        portgroup=node.portgroup,
        power_state="poweredOff",
        num_cpus=int(config.numCPUs or 0),
        memory_mb=int(config.memoryMB or 0),
    )


async def _namesakes(vc: VCenter, node: NodeSpec, identity: str, vms: list[VmBrief]) -> list[VmRecord]:
    """VMs of the node's name: ours whose import never completed (returned, to be
    replaced); any other is refused."""
    named = await vc._reads.records([b.moref for b in vms if b.name == node.name])
    for rec in named.values():
        if rec.import_identity != identity:
            raise Rejected(
                f"a VM named {node.name!r} ({rec.moref}) exists that this deployment did not create "
                f"(identity: {rec.identity or 'none'}); it is never adopted: rename or remove it, or rename the "
                "node",
                system=SYSTEM,
            )
    return list(named.values())


async def _destroy_incomplete(vc: VCenter, rec: VmRecord) -> None:
    """Remove a VM of ours whose import never completed (its disks may be partial)."""
    if rec.power_state != "poweredOff":
        await vc._write(f"power off {rec.name}", lambda c: rec.ref.PowerOffVM_Task(), vm=rec.moref, task=True)
    await vc._write(
        f"remove the incomplete import {rec.name}", lambda c: rec.ref.Destroy_Task(), task=True, keeps_briefs=True
    )
    vc._reads.removed(rec.moref)
