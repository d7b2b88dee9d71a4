"""Faults: vcsim stopped and restarted mid-step, TLS trust refused, vCenter down."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from _vcsim import (
    VM_STEPS,
    admin,
    identity,
    lab_deployment,
    run_step,
    started_vcsim,
    vcenter,
    writes,
)
from pyVmomi import vim

from config.errors import AdapterError, Rejected, Unreachable
from config.model import Deployment
from orchestrator.lab import Pki, Vcsim, make_test_pki, thumbprint_of

pytestmark = pytest.mark.vcsim


async def _wait_for_call(vc: Vcsim, method: str, timeout: float = 120.0) -> None:  # a bound on a hang
    deadline = time.monotonic() + timeout
    while method not in (r["method"] for r in vc.requests()):
        assert time.monotonic() < deadline, f"vcsim never received {method}"
        await asyncio.sleep(0.01)


async def test_vcsim_restarted_mid_step_is_noticed_and_the_world_redone(
    vcsim_binary: Path, vcsim_pki: Pki, tmp_path: Path
) -> None:
    """Stopped during the reservation's Reconfigure, restarted empty: the adapter logs in again,
    finds the VM gone, and deploy + reserve + BIOS lock redo what the world lacks."""
    first = started_vcsim(tmp_path / "one", vcsim_binary, vcsim_pki, delay={"ReconfigVM_Task": 2000})
    second = None
    try:
        deployment = lab_deployment(first, tmp_path / "lab")
        node = deployment.management
        async with vcenter(deployment) as vc:
            assert (await run_step("deploy_ova", deployment, node, vc)).changes
            step = asyncio.ensure_future(run_step("reserve_resources", deployment, node, vc))
            await _wait_for_call(first, "ReconfigVM_Task")
            first.stop()  # state is in memory only: everything is lost
            with pytest.raises(AdapterError) as lost:
                await step
            assert lost.value.retryable
            second = started_vcsim(tmp_path / "two", vcsim_binary, vcsim_pki, port=first.port, password=first.password)
            # The engine retries the step: the VM is gone, so the node must be deployed anew.
            with pytest.raises(Rejected, match="gone from vCenter"):
                await run_step("reserve_resources", deployment, node, vc)
            done = {name: (await run_step(name, deployment, node, vc)).changes for name in VM_STEPS}
            stats = vc.statistics()
            vm = await vc.find_vm(node, identity(deployment, node))
            assert vm is not None
            reservation = await vc.get_reservation(vm)
            bios = await vc.get_bios(vm)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert all(done.values()), done
    assert stats["logins"] == 2, "one login per vCenter life"
    assert writes(second).count("ImportVApp") == 1
    assert reservation.memory_locked and reservation.cpu_reservation_mhz == reservation.cpu_limit_mhz > 0
    assert bios.locked_marker and bios.boot_disk_first


async def test_a_stopped_vcenter_is_unreachable_and_retryable(vcsim: Vcsim, deployment: Deployment) -> None:
    """With vcsim gone, a read fails as Unreachable (retryable), named by what was being done."""
    async with vcenter(deployment) as vc:
        await vc.preflight(deployment)
        vcsim.stop()
        with pytest.raises(Unreachable, match="cannot reach vCenter") as info:
            await vc._reads.briefs()  # find_vm looks in the kept briefs: no call (issue #11)
    assert info.value.retryable


async def test_a_session_vcenter_forgot_is_renewed_once(vcsim_binary: Path, vcsim_pki: Pki, tmp_path: Path) -> None:
    """After a restart the old session gets NotAuthenticated: the adapter logs in once more and goes on."""
    first = started_vcsim(tmp_path / "one", vcsim_binary, vcsim_pki)
    deployment = lab_deployment(first, tmp_path / "lab")
    second = None
    try:
        async with vcenter(deployment) as vc:
            assert await vc.find_vm(deployment.management, identity(deployment, deployment.management)) is None
            first.stop()
            second = started_vcsim(tmp_path / "two", vcsim_binary, vcsim_pki, port=first.port, password=first.password)
            for _ in range(3):
                await vc._reads.briefs()  # find_vm looks in the kept briefs: the reads of every VM talk to vCenter
                assert await vc.find_vm(deployment.management, identity(deployment, deployment.management)) is None
            assert vc.statistics()["logins"] == 2
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.parametrize(
    "trust",
    [
        "wrong-ca",  # a CA file of another CA
        "wrong-thumbprint",  # a pinned SHA-256 that is not vcsim's certificate
        "system-store",  # neither: the system trust store does not know the lab CA
    ],
)
async def test_untrusted_certificates_are_refused(session_deployment: Deployment, tmp_path: Path, trust: str) -> None:
    """TLS is verified even on 127.0.0.1: an untrusted vCenter is Rejected before any login."""
    other = make_test_pki(tmp_path / "other", ca_name="Some Other CA")
    spec = session_deployment.vcenter
    if trust == "wrong-ca":
        spec = dataclasses.replace(spec, ca_file=str(other.ca_file))
    elif trust == "wrong-thumbprint":
        spec = dataclasses.replace(spec, ca_file=None, thumbprint=thumbprint_of(other.cert_file))
    else:
        spec = dataclasses.replace(spec, ca_file=None, thumbprint=None)
    deployment = dataclasses.replace(session_deployment, vcenter=spec)
    async with vcenter(deployment) as vc:
        with pytest.raises(Rejected, match="thumbprint|not trusted") as info:
            await vc.find_vm(deployment.management, identity(deployment, deployment.management))
        assert vc.statistics()["logins"] == 0
    assert not info.value.retryable


async def test_a_pinned_thumbprint_is_accepted_and_checked_on_every_connection(
    vcsim_binary: Path, vcsim_pki: Pki, tmp_path: Path
) -> None:
    """The right SHA-256 pin connects without a CA; when the server's certificate changes,
    the next connection is refused (pyvmomi's own pinning would have stopped checking)."""
    first = started_vcsim(tmp_path / "one", vcsim_binary, vcsim_pki)
    other = make_test_pki(tmp_path / "other", ca_name="Some Other CA")
    second = None
    try:
        lab = lab_deployment(first, tmp_path / "lab")
        spec = dataclasses.replace(lab.vcenter, ca_file=None, thumbprint=thumbprint_of(first.cert_file))
        deployment = dataclasses.replace(lab, vcenter=spec)
        node = deployment.management
        async with vcenter(deployment) as vc:
            await asyncio.gather(*(vc.find_vm(node, identity(deployment, node)) for _ in range(4)))
            assert vc.statistics()["logins"] == 1
            first.stop()
            second = started_vcsim(tmp_path / "two", vcsim_binary, other, port=first.port, password=first.password)
            with pytest.raises(Rejected, match="does not match vcenter.thumbprint"):
                await vc._reads.briefs()  # find_vm looks in the kept briefs: no call (issue #11)
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_a_task_of_a_vcenter_that_restarted_is_never_taken_for_another(
    vcsim_binary: Path, vcsim_pki: Pki, tmp_path: Path
) -> None:
    """After a restart the same task name can denote another task: a task handed out before it is reported gone, not
    done."""
    first = started_vcsim(tmp_path / "one", vcsim_binary, vcsim_pki)
    deployment = lab_deployment(first, tmp_path / "lab")
    second = None
    try:
        async with vcenter(deployment) as vc:
            task = await vc._session.call(
                "annotate a VM",
                lambda c: c.searchIndex.FindByInventoryPath("DC0/vm/DC0_H0_VM0").ReconfigVM_Task(
                    spec=vim.vm.ConfigSpec(annotation="before")
                ),
                idempotent=False,
            )
            first.stop()
            second = started_vcsim(tmp_path / "two", vcsim_binary, vcsim_pki, port=first.port, password=first.password)
            with admin(second) as content:
                # vcsim names objects from one counter: its tasks come to the old name again.
                vm = content.searchIndex.FindByInventoryPath("DC0/vm/DC0_H0_VM0")
                while (other := vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(annotation="after")))._moId != task._moId:
                    assert int(other._moId.split("-")[1]) < int(task._moId.split("-")[1]), "the name was skipped"
                assert other.info.state == "success"
            assert (
                await vc.find_vm(deployment.management, identity(deployment, deployment.management)) is None
            )  # logs in again
            with pytest.raises(Rejected, match="vCenter restarted") as info:
                await vc._tasks.wait(task, "annotate a VM")
            assert info.value.retryable
            assert vc.statistics()["logins"] == 2
    finally:
        first.stop()
        if second is not None:
            second.stop()
