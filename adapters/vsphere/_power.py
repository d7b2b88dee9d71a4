"""Powering VMs on, many in one call: ``Datacenter.PowerOnMultiVM_Task``.

Every node's BIOS lock powers its VM on at about the same moment. vCenter can power a
whole list of VMs on in one task (the vSphere Client does so for a multi-selection), so
the power-ons asked for while others are in flight go out together: one round trip for
all of them instead of one per VM. The outcome is judged per VM, never per call:

* ``notAttempted`` (with its fault): that VM failed;
* ``attempted`` with a task of its own: that task decides;
* otherwise the VM is read (in the same call as the task, then once more if need be)
  and counts as powered on only when vCenter shows it so. A VM left off (a DRS cluster
  in manual mode answers with recommendations instead) fails, retryable.

ESXi without vCenter has no ``PowerOnMultiVM_Task``: there each VM gets ``PowerOnVM_Task``
(the caller asks :meth:`PowerOns.supported`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.vsphere._batch import InFlight, TaskWaiter
from adapters.vsphere._inventory import VmRecord, moid
from adapters.vsphere._reads import VmReader
from adapters.vsphere._session import SYSTEM, Session, map_vmomi_errors
from config.errors import AdapterError, Rejected

__all__ = ["PowerOns"]


class PowerOns:
    """The power-ons of one adapter, batched.

    Args:
        session: the vCenter session.
        reads: the adapter's VM reads (changes are noted there, as for any write).
        tasks: the adapter's task waiter.
        in_flight: the adapter's calls in flight (a batch waits for them, then goes).
        datacenter: the datacenter (pyvmomi), whose ``PowerOnMultiVM_Task`` is used.
    """

    def __init__(
        self,
        session: Session,
        reads: VmReader,
        tasks: TaskWaiter,
        in_flight: InFlight,
        datacenter: Callable[[], Awaitable[Any]],
    ):
        self._session = session
        self._reads = reads
        self._tasks = tasks
        self._in_flight = in_flight
        self._datacenter = datacenter
        self._queue: dict[str, tuple[VmRecord, asyncio.Future[None]]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._api = (0, False)  # (login generation, whether the server is a vCenter)

    async def supported(self) -> bool:
        """Whether the server is a vCenter (ESXi alone has no ``PowerOnMultiVM_Task``)."""
        generation, vcenter = self._api
        if generation != self._session.generation or generation == 0:
            # ServiceContent.about came with the login: no round trip, but a worker thread
            # (the login may be due), so it is kept per login.
            with self._in_flight.track():  # the power-on it precedes then joins the batch
                api = await self._session.call(
                    "read the API type", lambda c: (self._session.generation, str(c.about.apiType))
                )
            self._api = generation, vcenter = api[0], api[1] == "VirtualCenter"
        return vcenter

    async def power_on(self, rec: VmRecord) -> None:
        """Power ``rec``'s VM on, with every other VM asked for meanwhile, and see it on.

        Raises:
            Rejected: vCenter did not power it on (its fault, or still off afterwards).
            Unreachable, Timeout: the call or its task; the VM may or may not be on.
        """
        queued = self._queue.get(rec.moref)
        if queued is None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if nobody waits
            queued = self._queue[rec.moref] = (rec, future)
            if self._runner is None:
                self._runner = asyncio.ensure_future(self._run())
        await asyncio.shield(queued[1])

    async def _run(self) -> None:
        try:
            while self._queue:
                await self._in_flight.settle()  # the other VMs' calls return, and they join
                batch, self._queue = self._queue, {}
                try:
                    outcomes = await self._power_on([rec for rec, _ in batch.values()])
                except BaseException as exc:
                    for _, future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for moref, (_, future) in batch.items():
                    error = outcomes.get(moref)
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        finally:
            self._runner = None
            if self._queue:
                self._runner = asyncio.ensure_future(self._run())

    async def _power_on(self, recs: list[VmRecord]) -> dict[str, BaseException | None]:
        """One ``PowerOnMultiVM_Task`` for ``recs``: each VM's error, or ``None`` when it is on."""
        names = ", ".join(r.name for r in recs[:5]) + (f" and {len(recs) - 5} more" if len(recs) > 5 else "")
        what = f"power on VM{'s' if len(recs) > 1 else ''} {names}"
        datacenter = await self._datacenter()
        refs = [r.ref for r in recs]
        try:
            with self._in_flight.track():
                task = await self._session.call(
                    what, lambda c: datacenter.PowerOnMultiVM_Task(vm=refs), idempotent=False
                )
            result, seen = await self._tasks.wait(task, what, vms=[r.moref for r in recs])
        except BaseException:
            self._reads.forget()
            raise
        finally:
            for r in recs:
                self._reads.changed(r.moref)
        attempted = {moid(a.vm): a.task for a in getattr(result, "attempted", None) or () if a.vm is not None}
        refused = {moid(n.vm): n.fault for n in getattr(result, "notAttempted", None) or () if n.vm is not None}
        outcomes: dict[str, BaseException | None] = {}
        own_tasks: dict[str, Any] = {}
        unseen: list[VmRecord] = []
        for rec in recs:
            if rec.moref in refused:
                outcomes[rec.moref] = _mapped(refused[rec.moref], f"power on VM {rec.name}: vCenter did not attempt it")
            elif attempted.get(rec.moref) is not None:
                own_tasks[rec.moref] = attempted[rec.moref]
            elif (now := seen.get(rec.moref)) is not None and now.power_state == "poweredOn":
                self._reads.saw(now)  # read with the task, and it shows the VM on
                outcomes[rec.moref] = None
            else:
                unseen.append(rec)
        if own_tasks:
            waits = [
                self._tasks.wait(t, f"power on VM {next(r.name for r in recs if r.moref == m)}")
                for m, t in own_tasks.items()
            ]
            for moref, done in zip(own_tasks, await asyncio.gather(*waits, return_exceptions=True), strict=True):
                outcomes[moref] = done if isinstance(done, BaseException) else None
        if unseen:
            now_read = await self._reads.records([r.moref for r in unseen])  # read after the task: what is, is
            for rec in unseen:
                now = now_read.get(rec.moref)
                if now is not None and now.power_state == "poweredOn":
                    outcomes[rec.moref] = None
                else:
                    outcomes[rec.moref] = Rejected(
                        f"vCenter did not power on VM {rec.name} (it is {now.power_state if now else 'gone'}); a DRS "
                        "cluster in manual mode answers with recommendations instead: apply them or automate DRS, "
                        "then run again",
                        retryable=True,
                        system=SYSTEM,
                    )
        return outcomes


def _mapped(fault: Any, what: str) -> BaseException:
    """A fault vCenter reported for one VM, as the ``config.errors`` type it maps to."""
    try:
        with map_vmomi_errors(what):
            raise fault if isinstance(fault, BaseException) else Rejected(f"{what}: {fault!r}", system=SYSTEM)
    except AdapterError as exc:
        return exc
    raise AssertionError("unreachable")
