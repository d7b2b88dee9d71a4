"""Helpers for the tests against vcsim: the lab deployment, an administrator's own
session, the adapter as the steps use it, and the request log read back."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adapters.base import Systems
from adapters.vsphere import VCenter
from config.load import load_deployment
from config.model import Deployment, NodeSpec
from orchestrator.lab import (
    Pki,
    Vcsim,
    prepare_inventory,
    start_vcsim,
    write_lab_config,
)

__all__ = [
    "VM_STEPS",
    "WRITES",
    "admin",
    "identity",
    "lab_deployment",
    "run_step",
    "started_vcsim",
    "vcenter",
    "writes",
]

# SOAP methods by which the adapter changes the world: a second run must send none of them.
# (The fixtures shape the inventory with AddVirtualSwitch/AddPortGroup/CreateFolder first.)
WRITES = frozenset(
    {
        "ReconfigVM_Task",
        "ImportVApp",
        "HttpNfcLeaseComplete",
        "PowerOnVM_Task",
        "PowerOnMultiVM_Task",
        "PowerOffVM_Task",
        "ResetVM_Task",
        "Destroy_Task",
        "SetField",
        "AddCustomFieldDef",
        "PutUsbScanCodes",
    }
)
VM_STEPS = ("deploy_ova", "reserve_resources", "lock_bios")


def started_vcsim(workdir: Path, binary: Path, pki: Pki, **kwargs: Any) -> Vcsim:
    """A vcsim started and shaped like the lab (second vSwitch, Pexip portgroups, folder)."""
    vc = start_vcsim(workdir, binary=binary, pki=pki, **kwargs)
    try:
        prepare_inventory(vc)
    except BaseException:
        vc.stop()
        raise
    return vc


def lab_deployment(vc: Vcsim, lab_dir: Path, **kwargs: Any) -> Deployment:
    """The lab's deployment file for ``vc``, loaded by the project's own loader."""
    return load_deployment(write_lab_config(lab_dir, vc, **kwargs))


@contextlib.contextmanager
def admin(vc: Vcsim) -> Iterator[Any]:
    """A separate pyvmomi session, as an administrator at the vSphere client would have:
    the ``ServiceInstance`` content, to shape the world behind the adapter's back."""
    from pyVim.connect import Disconnect, SmartConnect

    parts = urlsplit(vc.url)
    si = SmartConnect(
        host=parts.hostname,
        port=parts.port,
        user=vc.user,
        pwd=vc.password,
        sslContext=ssl.create_default_context(cafile=str(vc.ca_file)),
    )
    try:
        yield si.RetrieveContent()
    finally:
        Disconnect(si)


def vcenter(deployment: Deployment, **kwargs: Any) -> VCenter:
    """The real adapter, with the BIOS waits of a real console set to nothing."""
    kwargs.setdefault("bios_boot_wait_s", 0.0)
    kwargs.setdefault("bios_key_pause_s", 0.0)
    return VCenter.from_deployment(deployment, **kwargs)


def writes(vc: Vcsim, since: int = 0) -> list[str]:
    """The world-changing SOAP calls vcsim received, after the first ``since`` requests."""
    return [r["method"] for r in vc.requests()[since:] if r["method"] in WRITES]


def identity(deployment: Deployment, node: NodeSpec) -> str:
    return f"{deployment.name}/{node.name}"


async def run_step(name: str, deployment: Deployment, node: NodeSpec, vsphere: Any) -> Any:
    """One of the orchestrator's steps, as the engine runs it: observe, diff, apply, verify."""
    from orchestrator.steps import STEPS, StepContext, execute  # only the tests that run steps need them

    systems = Systems(vsphere=vsphere, pexip=None, console=None, ca=None, directory=None)  # type: ignore[arg-type]
    return await execute(STEPS[name], StepContext(deployment=deployment, node=node, systems=systems))
