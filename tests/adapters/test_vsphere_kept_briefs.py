"""Finding VMs without reading every VM: the briefs read once per run and kept current (#11 target 3).

At the engine's concurrency (2 VMs per host) each VM's observe and verify used to read every
VM's brief again, so the requests per VM grew with the inventory. Now the briefs are read
once, kept current from the adapter's own writes and reads (and the inventory watch where it
runs), and a node's VM is found in their index: the requests per VM stay flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

import pytest
from _vcsim import VM_STEPS, WRITES, admin, identity, run_step, vcenter
from pyVim.task import WaitForTask

from adapters.vsphere import VCenter
from config.model import Deployment, NodeSpec
from orchestrator.lab import Vcsim

pytestmark = pytest.mark.vcsim

PER_HOST = 2  # the engine's limit of steps at once on one host (Step.per_host)


def _fleet(deployment: Deployment, prefix: str, count: int) -> tuple[Deployment, list[NodeSpec]]:
    hosts = tuple(dataclasses.replace(h, datastore_iops_capacity=10**6) for h in deployment.vcenter.hosts)
    roomy = dataclasses.replace(deployment, vcenter=dataclasses.replace(deployment.vcenter, hosts=hosts))
    return roomy, [dataclasses.replace(deployment.management, name=f"{prefix}-{i:03d}") for i in range(count)]


async def _step(vc: VCenter, name: str, deployment: Deployment, nodes: list[NodeSpec]) -> dict[str, int]:
    """``name`` for every node, ``PER_HOST`` at a time: the SOAP calls it made, by method."""
    limit = asyncio.Semaphore(PER_HOST)

    async def one(node: NodeSpec) -> None:
        async with limit:
            await run_step(name, deployment, node, vc)

    before = vc.statistics()["by_method"]
    await asyncio.gather(*(one(n) for n in nodes))
    return {m: n - before.get(m, 0) for m, n in vc.statistics()["by_method"].items() if n > before.get(m, 0)}


async def _run(deployment: Deployment, prefix: str, count: int) -> dict[str, Any]:
    """One run (an adapter of its own, its preflight) through the VM steps, then a second pass."""
    roomy, nodes = _fleet(deployment, prefix, count)
    figures: dict[str, Any] = {}
    async with vcenter(roomy) as vc:
        await vc.preflight(roomy)
        briefs = vc.statistics()["inventory_reads"]
        for step in VM_STEPS:
            figures[step] = sum((await _step(vc, step, roomy, nodes)).values()) / count
        second = [await _step(vc, step, roomy, nodes) for step in VM_STEPS]
        figures["second"] = sum(sum(calls.values()) for calls in second) / count
        figures["second_writes"] = sum(n for calls in second for m, n in calls.items() if m in WRITES)
        figures["briefs"] = vc.statistics()["inventory_reads"] - briefs
    return figures


async def test_requests_per_vm_at_two_per_host_stay_flat_from_10_to_100_vms(
    vcsim: Vcsim, deployment: Deployment
) -> None:
    """Deploy + reserve at 2 VMs per host costs at most 8 requests per VM (reserve at most 2), no more for 100 VMs
    than for 10 (the 100 run has 10 more VMs in the inventory); a second pass at most 1 per VM and no write; and no
    step reads every VM's brief again."""
    small = await _run(deployment, "pexip-flat-a", 10)
    large = await _run(deployment, "pexip-flat-b", 100)
    for figures in (small, large):
        assert figures["reserve_resources"] <= 2, figures
        assert figures["deploy_ova"] + figures["reserve_resources"] <= 8, figures
        assert figures["second"] <= 1, figures
        assert figures["second_writes"] == 0, figures
        assert figures["briefs"] == 0, figures  # the preflight's read serves the whole run
    for step in ("deploy_ova", "reserve_resources", "second"):
        # Flat: the fixed costs of a run spread over more VMs, nothing per VM grows with them.
        assert large[step] <= small[step] + 0.05, (step, small, large)
    # lock_bios's power-ons share one call when two meet, which depends on timing (not on the inventory).
    assert large["lock_bios"] <= small["lock_bios"] + 0.5, (small, large)


async def test_finding_a_vm_reads_nothing_once_the_briefs_are_kept(vcsim: Vcsim, deployment: Deployment) -> None:
    """After the preflight's read, finding the nodes' VMs (one just imported, one not there) sends no request."""
    roomy, nodes = _fleet(deployment, "pexip-find", 2)
    async with vcenter(roomy) as vc:
        await vc.preflight(roomy)
        await run_step("deploy_ova", roomy, nodes[0], vc)
        before = vc.statistics()["round_trips"]
        for _ in range(3):
            found = await vc.find_vm(nodes[0], identity(roomy, nodes[0]))
            assert await vc.find_vm(nodes[1], identity(roomy, nodes[1])) is None
        assert found is not None and found.name == nodes[0].name
        assert vc.statistics()["round_trips"] == before


async def test_a_vm_removed_behind_our_back_is_seen_through_the_watch(vcsim: Vcsim, deployment: Deployment) -> None:
    """With the inventory watch running, a VM an administrator destroys is no longer found (the kept brief is
    dropped), and one they rename is found by its new name only after a read of it by moref."""
    roomy, nodes = _fleet(deployment, "pexip-watched", 2)
    async with vcenter(roomy) as vc:
        await vc.preflight(roomy)
        for node in nodes:
            await run_step("deploy_ova", roomy, node, vc)
        events: asyncio.Queue[Any] = asyncio.Queue()

        async def watch() -> None:
            async for event in vc.watch_inventory(pattern="*", tag=None):
                await events.put(event)

        watcher = asyncio.ensure_future(watch())
        try:

            async def wait_for(kind: str, name: str) -> None:
                while True:
                    event = await asyncio.wait_for(events.get(), 60)  # a bound on a hang, not on how soon
                    if event.kind == kind and event.name == name:
                        return

            await wait_for("enter", nodes[1].name)  # the watch's first full state
            with admin(vcsim) as content:
                gone = content.searchIndex.FindByInventoryPath(f"DC0/vm/pexip/{nodes[0].name}")
                renamed = content.searchIndex.FindByInventoryPath(f"DC0/vm/pexip/{nodes[1].name}")
                WaitForTask(gone.Destroy_Task())
                WaitForTask(renamed.Rename_Task(newName="pexip-renamed"))
            await wait_for("leave", nodes[0].name)
            await wait_for("modify", "pexip-renamed")

            def reads() -> int:  # the watch's own long polls are WaitForUpdatesEx
                return int(vc.statistics()["by_method"].get("RetrievePropertiesEx", 0))

            before = reads()
            assert await vc.find_vm(nodes[0], identity(roomy, nodes[0])) is None
            assert reads() == before  # dropped from the kept briefs: nothing to read
            found = await vc.find_vm(nodes[1], identity(roomy, nodes[1]))  # by its identity, read afresh
            assert found is not None and found.name == "pexip-renamed"
            assert reads() == before + 1
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def test_a_steps_observation_serves_its_apply_unless_changed_here_since(
    vcsim: Vcsim, deployment: Deployment
) -> None:
    """Reserving right after observing sends the reconfiguration first, no read in between; after a change made
    here since the observation, the apply reads the VM again first."""
    node = deployment.management
    async with vcenter(deployment) as vc:
        vm = await vc.import_ova(node, identity(deployment, node), deployment.ova.management)
        await vc.preflight(deployment)  # the IOPS limits in use: read here, not by the reservations

        async def apply_calls(memory_locked: bool, *, changed_between: bool) -> list[str]:
            current = await vc.get_reservation(vm)
            if changed_between:
                vc._reads.changed(vm.moref)  # what every write of the adapter to the VM records
            before = len(vcsim.requests())
            await vc.set_reservation(vm, dataclasses.replace(current, memory_locked=memory_locked))
            return [r["method"] for r in vcsim.requests()[before:]]

        assert (await apply_calls(True, changed_between=False))[0] == "ReconfigVM_Task"
        assert (await apply_calls(False, changed_between=True))[:2] == ["RetrievePropertiesEx", "ReconfigVM_Task"]


async def test_a_resync_reads_every_brief_once_and_sees_what_the_watch_did_not(
    vcsim: Vcsim, deployment: Deployment
) -> None:
    """Without the watch, a VM renamed and one destroyed behind the adapter's back are found as kept until a resync;
    after it, one read of every VM's brief, shared by the lookups made at once, shows both."""
    roomy, nodes = _fleet(deployment, "pexip-resync", 3)
    async with vcenter(roomy) as vc:
        await vc.preflight(roomy)
        for node in nodes:
            await run_step("deploy_ova", roomy, node, vc)
        with admin(vcsim) as content:
            renamed = content.searchIndex.FindByInventoryPath(f"DC0/vm/pexip/{nodes[0].name}")
            gone = content.searchIndex.FindByInventoryPath(f"DC0/vm/pexip/{nodes[1].name}")
            WaitForTask(renamed.Rename_Task(newName="pexip-resync-renamed"))
            WaitForTask(gone.Destroy_Task())

        async def find_all() -> list[Any]:
            return await asyncio.gather(*(vc.find_vm(n, identity(roomy, n)) for n in nodes))

        kept = await find_all()
        assert kept[0] is not None and kept[0].name == nodes[0].name  # as kept: not read again
        briefs = vc.statistics()["inventory_reads"]
        vc.resync()
        after = await find_all()
        assert vc.statistics()["inventory_reads"] == briefs + 1
        assert after[0] is not None and after[0].name == "pexip-resync-renamed"
        assert after[1] is None and after[2] == kept[2]
        before = vc.statistics()["round_trips"]
        assert await find_all() == after
        assert vc.statistics()["round_trips"] == before  # kept again from the resync's read
