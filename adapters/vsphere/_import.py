"""Importing an OVA as a node's VM: placement, the import spec, the lease, the identity; and finding it again.

:meth:`adapters.vsphere.VCenter.import_ova` and :meth:`~adapters.vsphere.VCenter.find_vm` (see their docstrings);
kept apart so the facade
stays small. It works through the adapter's own reads, writes and uploads.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from pyVmomi import VmomiSupport, vim

from adapters.base import VmState
from adapters.vsphere._inventory import IDENTITY_FIELD, IMPORT_KEY, VmBrief, VmRecord, moid, vm_state
from adapters.vsphere._ova import Package, ovf_networks, read_package
from adapters.vsphere._session import SYSTEM
from config.errors import ConfigError, Rejected
from config.model import MANAGEMENT, NodeSpec

if TYPE_CHECKING:
    from adapters.vsphere._vcenter import VCenter

__all__ = ["TEMPLATE_NAME", "find_vm", "import_ova", "renamed"]

# The entity name of the one import spec asked for per package and placement: vCenter writes the
# name into the spec (the VM's name, its disks' paths, the files' device ids), where each node's
# own replaces it. Only names vCenter takes as they are (no escaping in datastore paths) share it.
TEMPLATE_NAME = "pexip-orchestrator-import-template"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def renamed(value: Any, old: str, new: str) -> Any:
    """A copy of an import spec (a pyVmomi data object) with ``old`` replaced by ``new`` in every
    string; managed object references and other values are shared (never changed)."""
    if type(value) is str:
        return value.replace(old, new) if old in value else value
    if isinstance(value, VmomiSupport.DataObject):
        copy = object.__new__(type(value))
        # Most of a spec's fields are unset: no call for them (issue #11: this copy was a tenth of the
        # event loop's CPU for 100 imports).
        copy.__dict__.update(
            {k: v if v is None or type(v) in _AS_IS else renamed(v, old, new) for k, v in value.__dict__.items()}
        )
        return copy
    if isinstance(value, list):
        return type(value)(v if type(v) in _AS_IS else renamed(v, old, new) for v in value)
    return value


_AS_IS = frozenset({bool, int, float})


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
    package, networks = _package(vc, ova, field_name)
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

    def create_spec(content: Any, name: str) -> Any:
        cisp = vim.OvfManager.CreateImportSpecParams(
            entityName=name,
            networkMapping=[vim.OvfManager.NetworkMapping(name=n, network=inv.network_refs[net_ref]) for n in networks],
        )
        return content.ovfManager.CreateImportSpec(
            ovfDescriptor=package.descriptor, resourcePool=pool, datastore=inv.datastore_refs[ds_ref], cisp=cisp
        )

    what = f"create the import spec of {node.name}"

    async def ask(name: str) -> Any:
        with vc._in_flight.track():
            return await vc._session.call(what, lambda c: create_spec(c, name))

    result = None
    if _PLAIN_NAME.fullmatch(node.name):
        # One spec per package and placement per login, renamed per node (issue #11: a round trip
        # and its parse per VM); a name vCenter might escape in its paths asks for its own.
        spec_key = f"import_spec {package.path} {hash(package.descriptor)} {moid(pool)} {ds_ref} {net_ref} {networks}"
        shared = vc._session.once(spec_key, lambda: _shared(ask(TEMPLATE_NAME)))
        try:
            template = await asyncio.shield(shared)
        except BaseException:
            vc._session.forget(spec_key)  # the next import asks again
            raise
        if not template.error:
            result = renamed(template, TEMPLATE_NAME, node.name)
    if result is None:
        result = await ask(node.name)
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


def _package(vc: VCenter, ova: str, field_name: str) -> tuple[Package, list[str]]:
    """The OVA read and its networks, once per login while the file is unchanged (issue #11: every import
    of one OVA opened the tar and parsed its descriptor again, on the event loop)."""
    try:
        st = os.stat(ova)
    except OSError:
        st = None  # read_package says what is wrong
    if st is None or "://" in ova:
        package = read_package(ova, field_name)
        return package, ovf_networks(package.descriptor)

    def read() -> tuple[Package, list[str]]:
        package = read_package(ova, field_name)
        return package, ovf_networks(package.descriptor)

    return vc._session.once(f"package {ova} {st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns}", read)


def _shared(call: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
    future = asyncio.ensure_future(call)
    future.add_done_callback(lambda f: f.cancelled() or f.exception())  # no warning if none waits for it
    return future


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
