"""What wakes the reconciler: the deployment file, vCenter's inventory, the resync period, and the leases' heartbeat.

Each is a coroutine that runs until cancelled, and turns what it sees into calls on the
:class:`~orchestrator.daemon._reconciler.Reconciler`: ``reload`` (the file changed),
``notice`` (an event names a node), ``resync`` (every node). None of them acts on a node.

A VM of vCenter matching ``vcenter.name_pattern`` (and carrying ``vcenter.tag`` when set)
names a node when its name is a declared node's: that node is reconciled (a failed one is
retried at once). A matching VM that no node declares is logged at WARNING as an unknown VM,
once per VM: the daemon never adopts a VM (DESIGN.md: a VM is found by its identity); declare
it as a ``[[conferencing]]`` entry to have it driven.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
import watchfiles

from config.rules import heartbeat_period
from orchestrator.daemon._reconciler import Reconciler

__all__ = ["watch_config", "watch_inventory", "resync_every", "heartbeat"]

log = structlog.get_logger("orchestrator.daemon")


async def watch_config(reconciler: Reconciler, path: Path, *, debounce_ms: int = 200) -> None:
    """Reload when the deployment file changes (its directory is watched: editors replace files by rename)."""
    path = path.resolve()
    # The watch starts before anything else can change the file (awatch reports changes after it starts).
    async for changes in watchfiles.awatch(
        path.parent,
        watch_filter=lambda _change, changed: Path(changed).resolve() == path,
        debounce=debounce_ms,
        recursive=False,
    ):
        if path.exists():  # a rename in two steps: the file comes back in the next batch
            await reconciler.reload(f"{path.name} changed ({len(changes)} change(s))")


async def watch_inventory(reconciler: Reconciler, *, retry_s: float = 5.0) -> None:
    """vCenter's VMs matching the configured pattern (and tag): each event names a node, or an unknown VM.

    After a reload the watch starts again over the new deployment's adapters and pattern.
    """
    unknown: set[str] = set()
    while True:
        reconciler.reloaded.clear()
        watching = asyncio.ensure_future(_pump(reconciler, unknown))
        reloaded = asyncio.ensure_future(reconciler.reloaded.wait())
        try:
            await asyncio.wait([watching, reloaded], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watching, reloaded):
                task.cancel()
            await asyncio.gather(watching, reloaded, return_exceptions=True)
        if watching.done() and not watching.cancelled() and watching.exception() is not None:
            log.error("inventory watch failed; watching again", error=str(watching.exception()), retry_in_s=retry_s)
            await asyncio.sleep(retry_s)


async def _pump(reconciler: Reconciler, unknown: set[str]) -> None:
    generation = reconciler.generation
    spec = generation.deployment.vcenter
    async for event in generation.systems.vsphere.watch_inventory(spec.name_pattern, spec.tag):
        if event.kind == "leave":
            unknown.discard(event.moref)
            reconciler.notice(event.name, f"VM {event.moref} left vCenter", refresh=True)
        elif reconciler.notice(event.name, f"VM {event.moref} {event.kind}", refresh=event.kind == "modify"):
            continue
        elif event.kind == "enter" and event.moref not in unknown:
            unknown.add(event.moref)
            log.warning(
                "unknown VM: it matches vcenter.name_pattern but no node of the deployment file has its "
                "name; declare it as a [[conferencing]] entry to have it driven",
                vm=event.name,
                moref=event.moref,
                pattern=spec.name_pattern,
            )


async def resync_every(reconciler: Reconciler) -> None:
    """Every ``daemon.resync_s``: every node queued again (the reconcile of a done node calls ``resync_node``)."""
    while True:
        await asyncio.sleep(reconciler.deployment.daemon.resync_s)
        log.info("resync", nodes=len(reconciler.deployment.nodes))
        reconciler.resync()


async def heartbeat(reconciler: Reconciler) -> None:
    """Keep the daemon's leases fresh (the period ``run`` uses)."""
    while True:
        await asyncio.sleep(heartbeat_period(reconciler.deployment.journal.lease_timeout_s))
        reconciler.journal.heartbeat(reconciler.owner)
