"""vSphere reads that depend neither on timing nor on the inventory's size (#11 target 3).

The IOPS limits in use on a datastore are read once per run and kept current from the
adapter's own reservations; an observation is never served by a read from before it was
asked for (no time window), and observations asked for together share one read.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from _vcsim import identity, vcenter

from adapters.base import VmState
from adapters.vsphere import VCenter
from config.errors import Rejected
from config.model import Deployment
from orchestrator.lab import Vcsim, make_test_ova

pytestmark = pytest.mark.vcsim


def _capacity(deployment: Deployment, iops: int) -> Deployment:
    hosts = tuple(dataclasses.replace(h, datastore_iops_capacity=iops) for h in deployment.vcenter.hosts)
    return dataclasses.replace(deployment, vcenter=dataclasses.replace(deployment.vcenter, hosts=hosts))


async def _import(vc: VCenter, deployment: Deployment, tmp_path: Path, count: int) -> list[VmState]:
    nodes = [dataclasses.replace(deployment.management, name=f"pexip-iops-{i}") for i in range(count)]
    ova = str(make_test_ova(tmp_path / "iops.ova"))
    return list(await asyncio.gather(*(vc.import_ova(n, identity(deployment, n), ova) for n in nodes)))


async def _limit(vc: VCenter, vm: VmState, iops: int) -> None:
    current = await vc.get_reservation(vm)
    await vc.set_reservation(
        vm, dataclasses.replace(current, disks=tuple(dataclasses.replace(d, iops_limit=iops) for d in current.disks))
    )


async def test_the_iops_in_use_is_read_once_and_kept_current_from_our_writes(
    vcsim: Vcsim, deployment: Deployment, tmp_path: Path
) -> None:
    """Four reservations one after another read the datastore's limits once; a fifth over budget is refused unread."""
    small = _capacity(deployment, 450)
    async with vcenter(small) as vc:
        vms = await _import(vc, small, tmp_path, 5)
        for vm in vms[:4]:
            await _limit(vc, vm, 100)
        assert vc._iops.fetches == 1
        assert await vc.datastore_iops_in_use("LocalDS_0", exclude_vm=vms[4].name) == 400
        before = len(vcsim.requests())
        with pytest.raises(Rejected, match=r"would come to 500 \(pexip-iops-4: 100, other VMs: 400\)"):
            await _limit(vc, vms[4], 100)
        assert vc._iops.fetches == 1
        assert "ReconfigVM_Task" not in [r["method"] for r in vcsim.requests()[before:]]


async def test_the_preflight_read_serves_the_budget(vcsim: Vcsim, deployment: Deployment, tmp_path: Path) -> None:
    """After the preflight (which reads every VM on the datastores), reservations read no IOPS limits at all."""
    async with vcenter(deployment) as vc:
        vms = await _import(vc, deployment, tmp_path, 2)
        await vc.preflight(deployment)
        for vm in vms:
            await _limit(vc, vm, 100)
        assert vc._iops.fetches == 0
        assert await vc.datastore_iops_in_use("LocalDS_0", exclude_vm="nobody") == 200


async def test_an_observation_is_never_served_by_an_earlier_read(
    vcsim: Vcsim, deployment: Deployment, tmp_path: Path
) -> None:
    """Two observations one after the other read twice (no reuse window); five asked together read once."""
    async with vcenter(deployment) as vc:
        vms = await _import(vc, deployment, tmp_path, 5)
        await vc.get_reservation(vms[0])

        def reads() -> int:
            return int(vc.statistics()["by_method"].get("RetrievePropertiesEx", 0))

        before = reads()
        await vc.get_reservation(vms[0])
        await vc.get_reservation(vms[0])
        assert reads() - before == 2
        before = reads()
        await asyncio.gather(*(vc.get_reservation(vm) for vm in vms))
        assert reads() - before == 1
