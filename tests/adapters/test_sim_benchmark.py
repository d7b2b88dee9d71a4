"""Benchmark: the guide's whole happy path for 1,000 nodes straight through the twins.

Run with ``.venv/bin/pytest tests/adapters/test_sim_benchmark.py -m slow -s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from _sim_factory import (
    authenticate_ldap,
    certify,
    deploy_conferencing,
    harden_manager,
    install_manager,
    make_deployment,
    make_systems,
)

from adapters.sim import SimWorld

EXACTLY_ONCE = ("vm_import", "reservation_set", "bios_lock", "power_on", "csr_create", "cert_sign", "cert_complete")


@pytest.mark.slow
async def test_thousand_nodes_through_the_twins(tmp_path: Path) -> None:
    """1 Manager + 999 Conferencing Nodes reach SYNCED with each effect once (the time is printed, not asserted)."""
    deployment = make_deployment(1000, tmp_path)
    world = SimWorld.open(tmp_path / "world.sqlite")
    systems = make_systems(world, deployment)
    start = time.perf_counter()
    await systems.vsphere.preflight(deployment)
    await install_manager(systems, deployment)
    locations = await harden_manager(systems, deployment)
    [manager] = await systems.pexip.list_objects("management_vm", primary=True)
    await certify(systems, deployment.management, manager["resource_uri"])
    await systems.pexip.create("ca_certificate", {"certificate": (await systems.ca.chain())[0]})
    await authenticate_ldap(systems, deployment)
    location = next(iter(locations.values()))
    await asyncio.gather(*(deploy_conferencing(systems, deployment, n, location) for n in deployment.conferencing))
    statuses = await systems.pexip.status("worker_vm")
    elapsed = time.perf_counter() - start
    stats, summary = world.statistics(), world.effects_summary()
    await world.aclose()
    print(f"\n1000 nodes through the twins: {elapsed:.2f} s, {stats}")
    assert len(statuses) == 999 and {s["sync_status"] for s in statuses} == {"SYNCED"}
    for node in deployment.nodes:
        assert all(summary[node.name][kind] == 1 for kind in EXACTLY_ONCE), node.name
