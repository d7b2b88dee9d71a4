"""Inventory watching on vcsim: enter, modify and leave events, filtered, and a reconnection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _vcsim import admin, identity, lab_deployment, started_vcsim, vcenter

from adapters.vsphere import InventoryEvent, VCenter
from config.model import Deployment
from orchestrator.lab import Pki, Vcsim

pytestmark = pytest.mark.vcsim


@contextlib.asynccontextmanager
async def _watching(vc: VCenter, **kwargs: object) -> AsyncIterator[asyncio.Queue[InventoryEvent]]:
    events: asyncio.Queue[InventoryEvent] = asyncio.Queue()

    async def pump() -> None:
        async for event in vc.watch_inventory(**kwargs):  # type: ignore[arg-type]
            events.put_nowait(event)

    task = asyncio.ensure_future(pump())
    try:
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _next(events: asyncio.Queue[InventoryEvent], kind: str, name: str) -> InventoryEvent:
    """The next event of that kind and VM, skipping others (vcsim reports in 250 ms ticks)."""
    while True:
        event = await asyncio.wait_for(events.get(), timeout=60)  # a bound on a hang, not on how soon
        if event.kind == kind and event.name == name:
            return event


async def test_enter_modify_leave(vcsim: Vcsim, deployment: Deployment) -> None:
    """A VM imported, powered on and destroyed yields enter, modify and leave; others are filtered out."""
    node = deployment.management
    async with vcenter(deployment) as vc, _watching(vc, pattern="pexip-*") as events:
        # The first update is the whole inventory: vcsim's own VMs do not match pexip-*.
        vm = await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
        entered = await _next(events, "enter", node.name)
        assert entered.moref == vm.moref
        with admin(vcsim) as content:
            ref = content.searchIndex.FindByInventoryPath(f"DC0/vm/pexip/{node.name}")
            ref.PowerOnVM_Task()
            modified = await _next(events, "modify", node.name)
            assert modified.power_state == "poweredOn" and "runtime.powerState" in modified.changed
            ref.PowerOffVM_Task()
            await _next(events, "modify", node.name)
            # Apart in time: vcsim 0.24 panics on a VM changed and destroyed within one of
            # its 250 ms ticks (the watch then resynchronises, see the restart test).
            ref.Destroy_Task()
        left = await _next(events, "leave", node.name)
        assert left.moref == vm.moref
        assert all(e.name.startswith("pexip-") for e in list(events._queue))


async def test_filter_by_custom_attribute(vcsim: Vcsim, deployment: Deployment) -> None:
    """With tag set to our identity attribute, only VMs that carry it are reported, with their identity."""
    node = deployment.management
    async with vcenter(deployment) as vc:
        # vcsim's SetField emits no property update (vSphere does), so the VM is made ours
        # first and the watch sees the attribute in its first, full update.
        await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
        async with _watching(vc, pattern="*", tag="pexip-orchestrator.identity") as events:
            event = await _next(events, "enter", node.name)
            assert event.identity == identity(deployment, node)
            await asyncio.sleep(0.5)
            assert [e.name for e in list(events._queue)] == []


async def test_the_watch_reconnects_after_a_restart(vcsim_binary: Path, vcsim_pki: Pki, tmp_path: Path) -> None:
    """vcsim restarted empty: the watch logs in again and reports the difference (our VM left)."""
    first = started_vcsim(tmp_path / "one", vcsim_binary, vcsim_pki)
    second = None
    try:
        deployment = lab_deployment(first, tmp_path / "lab")
        node = deployment.management
        async with vcenter(deployment) as vc, _watching(vc, pattern="pexip-*") as events:
            await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
            await _next(events, "enter", node.name)
            first.stop()
            second = started_vcsim(tmp_path / "two", vcsim_binary, vcsim_pki, port=first.port, password=first.password)
            await _next(events, "leave", node.name)
            assert vc.statistics()["logins"] == 2
    finally:
        first.stop()
        if second is not None:
            second.stop()
