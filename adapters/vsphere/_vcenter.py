"""The real vSphere adapter: vCenter (or ESXi) through pyvmomi.

:class:`VCenter` implements :class:`adapters.base.VSphere` for the steps ``deployed``,
``reserved`` and ``bios_locked``, plus inventory watching for the daemon.

How it talks to vCenter (issue #3):

* pyvmomi is synchronous: every call runs in a worker thread, never on the event loop;
* one session per run, logged in again when vCenter forgets it (``NotAuthenticated``,
  a restart) — see :mod:`adapters.vsphere._session`;
* TLS always verified, by a CA file or a pinned SHA-256 thumbprint;
* reads are batched: one ``RetrievePropertiesEx`` reads the briefs of every VM of the
  datacenter, once per run (the preflight's), and they are kept current from this adapter's
  own writes and reads (and the inventory watch where it runs): a node's VM is found in
  their index, never by reading every VM again; one read takes the full records of all the
  VMs being observed at that moment together with the tasks and import leases being waited
  for; a read serves the callers of its batch, not a time window, and a step's observation
  serves its own apply (:mod:`adapters.vsphere._reads`, :meth:`VCenter._observed`);
* answers of the property collector are parsed with ElementTree, not pyVmomi's deserialiser
  (:mod:`adapters.vsphere._fastprops`: a tenth of the CPU); disks are uploaded from threads of their own;
* the IOPS limits in use on a datastore are read once per run, with only the VMs' names
  and devices, and kept current from this adapter's reservations (:mod:`adapters.vsphere._reserve`);
* a read about to start waits briefly for the adapter's other calls in flight, whose own
  reads then share it (:mod:`adapters.vsphere._batch`); a change whose task is seen done
  in a read that also shows the change needs no read more to be verified;
* the power-ons of many VMs go out as one ``PowerOnMultiVM_Task`` on vCenter, judged per
  VM (:mod:`adapters.vsphere._power`);
* only :mod:`config.errors` types leave this module.

Example::

    async with VCenter.from_deployment(deployment) as vc:
        await vc.preflight(deployment)
        vm = await vc.find_vm(node, identity) or await vc.import_ova(node, identity, deployment.ova.management)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from pyVmomi import vim, vmodl

from adapters.base import BiosState, Reservation, VmState
from adapters.vsphere._batch import InFlight, TaskWaiter
from adapters.vsphere._bios import bios_state, lock_bios, power_off
from adapters.vsphere._fields import FieldKeys
from adapters.vsphere._import import find_vm, import_ova
from adapters.vsphere._inventory import IDENTITY_FIELD, Inventory, VmRecord, read_inventory
from adapters.vsphere._keys import to_key_events
from adapters.vsphere._lease import LeaseUpload
from adapters.vsphere._power import PowerOns
from adapters.vsphere._preflight import check, identity_of, local_problems
from adapters.vsphere._reads import VmReader
from adapters.vsphere._reserve import IopsLedger, reservation, reservation_spec, shows_reservation
from adapters.vsphere._session import SYSTEM, Session, map_vmomi_errors
from adapters.vsphere._watch import InventoryEvent, watch_vms
from config.errors import ConfigError, Rejected
from config.model import Deployment, NodeSpec, VCenterSpec

__all__ = ["IDENTITY_FIELD", "InventoryEvent", "VCenter", "map_vmomi_errors"]

PC = vmodl.query.PropertyCollector


class VCenter:
    """vCenter or ESXi, for one deployment and one run.

    Args:
        spec: the ``[vcenter]`` section of the deployment.
        password: the revealed ``vcenter.password``.
        deployment_name: the deployment's name (identities are ``"<deployment>/<node>"``).
        bios_boot_wait_s: time from power-on until the BIOS setup screen takes keys.
        bios_key_pause_s: pause between keystroke phases (the BIOS saving, rebooting).
        task_timeout_s: longest wait for one vSphere task.
        call_timeout_s: socket timeout of one SOAP call.
        lease_progress_s: interval of import progress reports (they keep the lease alive).
        read_batch_wait_s: longest a read waits for the adapter's other calls in flight, whose
            own reads then share it (``adapters.vsphere._batch.InFlight``).
    """

    def __init__(
        self,
        spec: VCenterSpec,
        *,
        password: str,
        deployment_name: str,
        bios_boot_wait_s: float = 8.0,
        bios_key_pause_s: float = 2.0,
        task_timeout_s: float = 600.0,
        call_timeout_s: float = 60.0,
        lease_progress_s: float = 10.0,
        read_batch_wait_s: float = 0.05,
    ):
        self.spec = spec
        self.deployment_name = deployment_name
        self._session = Session(spec, password, timeout_s=call_timeout_s)
        self._in_flight = InFlight(max_wait_s=read_batch_wait_s)
        self._reads = VmReader(self._session, self._inventory_or_fail, settle=self._in_flight.settle)
        self._tasks = TaskWaiter(self._reads.objects, timeout_s=task_timeout_s)
        self._bios_boot_wait_s = bios_boot_wait_s
        self._bios_key_pause_s = bios_key_pause_s
        self._uploads = LeaseUpload(self._session, self._write, self._tasks.lease_ready, progress_s=lease_progress_s)
        self._iops = IopsLedger(self._session, spec)
        self._power = PowerOns(self._session, self._reads, self._tasks, self._in_flight, self._datacenter)
        self._fields = FieldKeys(self._session, self._reads)
        self._observations: dict[str, VmRecord] = {}  # moref -> a step's observation, for its apply (_observed)

    @classmethod
    def from_deployment(cls, deployment: Deployment, **kwargs: Any) -> VCenter:
        """The adapter for ``deployment.vcenter``, its password revealed now.

        Raises:
            ConfigError: ``vcenter.password`` is missing or cannot be read.
        """
        spec = deployment.vcenter
        if spec.password is None:
            raise ConfigError(
                "vcenter.password is not set; give a secret reference (env:NAME or file:PATH)", "vcenter.password"
            )
        try:
            password = spec.password.reveal()
        except (KeyError, OSError) as exc:
            raise ConfigError(
                f"cannot read {spec.password.ref}: {exc}; make the secret available", "vcenter.password"
            ) from exc
        return cls(spec, password=password, deployment_name=deployment.name, **kwargs)

    async def __aenter__(self) -> VCenter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Log out and close connections."""
        await self._uploads.aclose()
        await asyncio.to_thread(self._session.close_sync)

    def statistics(self) -> dict[str, Any]:
        """Round trips (total, by method), logins, batched VM reads, inventory_reads (of every VM's brief)."""
        calls, reads = self._session.round_trips(), self._reads
        return {"round_trips": sum(calls.values()), "by_method": dict(sorted(calls.items()))} | {
            "logins": self._session.logins,
            "vm_reads": reads.fetches,
            "inventory_reads": reads.brief_fetches,
        }

    # --- reads and writes --------------------------------------------------------------

    def _inventory_sync(self, content: Any) -> tuple[Inventory | None, Any]:
        """The datacenter's inventory and the VM folder (``None`` when not found); read once per login."""
        return self._session.once("inventory", lambda: read_inventory(content, self.spec.datacenter, self.spec.folder))

    def _inventory_or_fail(self, content: Any) -> Inventory:
        inv, _ = self._inventory_sync(content)
        if inv is None:
            raise ConfigError(
                f"datacenter {self.spec.datacenter!r} not found in vCenter {self.spec.url}", "vcenter.datacenter"
            )
        return inv

    async def _datacenter(self) -> Any:
        return (await self._inventory())[0].datacenter

    async def _inventory(self) -> tuple[Inventory, Any]:
        kept = self._session.kept("inventory")
        if kept is not None and kept[0] is not None:
            # Read once per login: no worker thread either, so that the steps of a batch stay
            # together and share their reads (issue #11).
            return kept  # type: ignore[no-any-return]
        return await self._session.call(
            "read the inventory", lambda c: (self._inventory_or_fail(c), self._inventory_sync(c)[1])
        )

    async def _write(
        self,
        what: str,
        fn: Any,
        *,
        vm: str | None = None,
        task: bool = False,
        shows: Callable[[VmRecord], bool] | None = None,
        keeps_briefs: bool = False,
    ) -> Any:
        """A call that changes the world (and, with ``task``, the wait for its task).

        Never retried blindly: a write that lost its answer may have happened, and only
        observing again can tell. ``vm``: the VM it changes (``None``: VMs come or go);
        no read from before serves an observation of it after. ``shows``: whether a record
        of ``vm`` shows the change; the VM is then read along with the task, and that
        record, if it shows the change, serves the observations after it (no read more).
        ``keeps_briefs`` (with no ``vm``): the caller tells the reads which VM came or went once
        it succeeded (``VmReader.added``, ``removed``); else no kept brief serves after it.
        """
        seen = None
        try:
            with self._in_flight.track():
                result = await self._session.call(what, fn, idempotent=False)
            if not task:
                return result
            result, seen_by_moref = await self._tasks.wait(
                result, what, vms=[vm] if vm is not None and shows is not None else []
            )
            seen = seen_by_moref.get(vm or "")
            return result
        except BaseException:
            self._reads.forget()
            raise
        finally:
            if vm is not None or not keeps_briefs:
                self._reads.changed(vm)
            if seen is not None and shows is not None and shows(seen):
                self._reads.saw(seen)

    async def _observe(self, vm: VmState) -> VmRecord:
        """:meth:`_resolve`, for a step's observation: the record also serves the apply that follows
        it (:meth:`_observed`)."""
        rec = await self._resolve(vm)
        self._observations[rec.moref] = rec
        return rec

    async def _observed(self, vm: VmState) -> VmRecord:
        """The record a step's observation of ``vm`` just read, for its apply (the change is built
        from what was observed and diffed), once, unless this adapter changed the VM since; else
        :meth:`_resolve`. Not a reuse in time: another step's observation reads again."""
        rec = self._observations.pop(vm.moref, None)
        if rec is not None and rec.identity == vm.identity and not self._reads.changed_since(rec):
            return rec
        return await self._resolve(vm)

    async def _resolve(self, vm: VmState) -> VmRecord:
        """Our VM now, by moref and identity; its identity decides, not the moref (a vCenter
        that lost its state may give the moref to another VM)."""
        rec = (await self._reads.records([vm.moref])).get(vm.moref)
        if rec is None or rec.identity != vm.identity:
            found = [b.moref for b in await self._reads.named(identity=vm.identity)]
            rec = (await self._reads.records(found[:1])).get(found[0]) if found else None
        if rec is None:
            raise Rejected(
                f"VM {vm.name} ({vm.identity}) is no longer in vCenter (removed, or vCenter lost its state); "
                "observe again: the node must be deployed anew",
                retryable=True,
                system=SYSTEM,
            )
        return rec

    # --- VSphere: preflight, find, import ------------------------------------------------

    async def preflight(self, deployment: Deployment) -> None:
        """Check the deployment against vCenter before any change.

        Raises:
            ConfigError: every problem found (host NICs, management network apart from the
                VMs' network, VLANs, inventory objects, IOPS budget, foreign VMs of our names,
                OVA files, the BIOS password's characters), with dotted field names.
        """
        problems: list[tuple[str, str]] = []
        self._session.forget("inventory")  # the preflight judges the inventory as it is now
        inv, folder = await self._session.call("read the inventory", self._inventory_sync)
        records: dict[str, VmRecord] = {}
        if inv is not None:
            # Full records of what the checks look into: every VM on our datastores (their
            # IOPS limits) and every VM of a node's name or identity (is it ours?).
            stores = {inv.datastore_by_name(h.datastore) for h in deployment.vcenter.hosts}
            names = {n.name for n in deployment.nodes}
            ours = {identity_of(deployment, n) for n in deployment.nodes}
            wanted = [
                b.moref
                for b in await self._reads.current()
                if stores & set(b.datastores) or b.name in names or b.identity in ours
            ]
            records = await self._reads.records(wanted)
            self._iops.seed({ds for ds in stores if ds is not None}, records)  # the reservations read no more
        problems.extend(check(deployment, inv, records, folder_found=folder is not None))
        problems.extend(local_problems(deployment))
        if problems:
            raise ConfigError(problems)

    async def find_vm(self, node: NodeSpec, identity: str) -> VmState | None:
        """Our VM for ``node`` (by identity), or ``None``.

        Raises:
            Rejected: a VM of the node's name exists that is not ours (never adopted), or two
                VMs carry the same identity.
        """
        return await find_vm(self, node, identity)

    async def import_ova(self, node: NodeSpec, identity: str, ova: str) -> VmState:
        """Import ``ova`` as ``node`` on its host, datastore, folder and portgroup.

        The VM is born with ``identity`` in its extraConfig (so an interrupted import is
        recognised as ours) and gets the identity custom attribute once the disks are
        uploaded and the lease completed: only then is it found by :meth:`find_vm`.

        Raises:
            ConfigError: the OVA, host, datastore, portgroup or folder is missing.
            Rejected: vCenter refused the import, or a VM of that name is not ours.
        """
        return await import_ova(self, node, identity, ova)

    # --- VSphere: reservation ---------------------------------------------------------------

    async def host_cpu_mhz(self, host: str) -> int:
        """MHz of one physical core of ``host`` (``summary.hardware.cpuMhz``)."""
        inv, _ = await self._inventory()
        rec = inv.host_by_name(host)
        if rec is None or rec.cpu_mhz <= 0:
            raise Rejected(
                f"host {host!r} not found in datacenter {self.spec.datacenter!r}, or it reports no CPU speed",
                system=SYSTEM,
            )
        return rec.cpu_mhz

    async def get_reservation(self, vm: VmState) -> Reservation:
        rec = await self._observe(vm)
        inv, _ = await self._inventory()
        return reservation(rec, inv)

    async def set_reservation(self, vm: VmState, wanted: Reservation) -> None:
        """Apply ``wanted`` whole: CPU, memory and every listed disk, in one reconfiguration.

        Raises:
            Rejected: a listed disk does not exist, or the IOPS limits on a datastore would
                exceed its configured capacity (checked before any change, against the limits
                in use read once per run: :class:`adapters.vsphere._reserve.IopsLedger`).
        """
        rec = await self._observed(vm)
        inv, _ = await self._inventory()
        missing = [d.key for d in wanted.disks if d.key not in {x.key for x in rec.disks}]
        if missing:
            raise Rejected(f"VM {rec.name} has no disk with key(s) {missing}", system=SYSTEM)
        claimed = await self._iops.claim(rec, wanted, inv)
        try:
            await self._reconfigure(
                rec,
                reservation_spec(rec, wanted),
                "reserve the resources of",
                shows=lambda r: shows_reservation(r, wanted, inv),
            )
        except BaseException:
            self._iops.forget(claimed)
            raise

    async def datastore_iops_in_use(self, datastore: str, exclude_vm: str) -> int:
        """Sum of the IOPS limits of every VM disk on ``datastore`` (a name) but those of
        ``exclude_vm`` (a VM name or moref). Unlimited disks (-1) add nothing."""
        inv, _ = await self._inventory()
        ds = inv.datastore_by_name(datastore)
        if ds is None:
            raise Rejected(f"datastore {datastore!r} not found in datacenter {self.spec.datacenter!r}", system=SYSTEM)
        return await self._iops.in_use(ds, inv, exclude=exclude_vm)

    async def _reconfigure(
        self, rec: VmRecord, spec: Any, what: str, *, shows: Callable[[VmRecord], bool] | None = None
    ) -> None:
        await self._write(
            f"{what} VM {rec.name}", lambda c: rec.ref.ReconfigVM_Task(spec=spec), vm=rec.moref, task=True, shows=shows
        )

    # --- VSphere: BIOS ------------------------------------------------------------------------

    async def get_bios(self, vm: VmState) -> BiosState:
        rec = await self._observe(vm)
        return bios_state(rec)

    async def lock_bios(self, vm: VmState, password: str) -> None:
        """Force BIOS setup, SCSI (0:0) disk first, power on, type the supervisor password
        (``adapters.vsphere._keys``), save and exit, mark the VM, and verify.

        The "typing" marker is written right before the first keystroke, "done" after the
        keys were saved (:mod:`adapters.vsphere._bios`): a crash before the first key is
        retried by itself; a VM found running with "typing" is refused with instructions.

        Raises:
            ConfigError: the password has characters that cannot be typed.
            Rejected: no SCSI (0:0) disk, an interrupted lock, or verification failed.
        """
        await lock_bios(self, vm, password, boot_wait_s=self._bios_boot_wait_s, key_pause_s=self._bios_key_pause_s)

    def resync(self) -> None:
        """Every VM's brief is read afresh by the next lookup (once: the lookups of a pass share it),
        and kept current from there (:class:`adapters.vsphere._reads.KeptBriefs`)."""
        self._reads.resync()

    async def power_off(self, vm: VmState) -> VmState:
        """PowerOffVM_Task unless it is off, then observed (``adapters.vsphere._bios.power_off``)."""
        return await power_off(self, vm)

    async def _power_on(self, rec: VmRecord, *, reset: bool) -> None:
        """Power on (or reset) and see it done; power-ons of many VMs share one call (vCenter)."""
        if reset:
            await self._write(f"reset VM {rec.name}", lambda c: rec.ref.ResetVM_Task(), vm=rec.moref, task=True)
        elif await self._power.supported():
            await self._power.power_on(rec)
        else:
            await self._write(f"power on VM {rec.name}", lambda c: rec.ref.PowerOnVM_Task(), vm=rec.moref, task=True)

    async def _type(self, rec: VmRecord, keys: list[Any]) -> None:
        # The password is inside the key events only: never in a message or a log.
        spec = vim.vm.UsbScanCodeSpec(keyEvents=to_key_events(keys))
        typed = await self._write(
            f"type on the console of VM {rec.name}", lambda c: rec.ref.PutUsbScanCodes(spec=spec), vm=rec.moref
        )
        if typed != len(keys):
            raise Rejected(
                f"the console of VM {rec.name} took {typed} of {len(keys)} keys; the BIOS lock must be checked on the "
                "console",
                system=SYSTEM,
            )

    # --- inventory watching ---------------------------------------------------------------------

    async def watch_inventory(
        self, pattern: str | None = None, tag: str | None = None
    ) -> AsyncIterator[InventoryEvent]:
        """VM ``enter``/``modify``/``leave`` events (``WaitForUpdatesEx`` over a container view),
        filtered by name ``pattern`` (default ``vcenter.name_pattern``) and custom attribute
        ``tag`` (default ``vcenter.tag``); reconnects on faults. Runs until the consumer stops."""

        def vm_folder(content: Any) -> Any:
            inv, _ = self._inventory_sync(content)
            if inv is None:
                raise ConfigError(f"datacenter {self.spec.datacenter!r} not found", "vcenter.datacenter")
            return inv.vm_folder

        def keep(event: InventoryEvent) -> None:  # every change seen keeps the briefs current (issue #11)
            self._reads.external(event.kind, event.moref, event.name, event.identity, event.power_state)

        async for event in watch_vms(
            self._session,
            vm_folder,
            pattern=pattern or self.spec.name_pattern,
            tag=tag or self.spec.tag,
            on_change=keep,
        ):
            yield event
