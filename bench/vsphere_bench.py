"""Benchmark: the real vSphere adapter on vcsim — round trips, logins, wall time.

Targets (issue #3): at most 5 SOAP round trips per VM per step, 1 login per run, and
under 1 s to take 50 VMs through ``reserved``. Drives the orchestrator's own steps
(``deploy_ova``, ``reserve_resources``, ``lock_bios``: observe, diff, apply, verify)
through :class:`adapters.vsphere.VCenter` against a vcsim started here with TLS.
Round trips are counted by the adapter (every SOAP call) and cross-checked with
vcsim's request log; each step's are also broken down by SOAP method. Prints figures;
asserts nothing.

    .venv/bin/python bench/vsphere_bench.py [--vms 50] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.base import Systems
from adapters.vsphere import VCenter
from config.load import load_deployment
from config.model import Deployment, NodeSpec
from orchestrator.lab import (
    build_vcsim,
    make_test_pki,
    prepare_inventory,
    start_vcsim,
    write_lab_config,
)
from orchestrator.steps import STEPS, StepContext, execute

VM_STEPS = ("deploy_ova", "reserve_resources", "lock_bios")


def fleet(base: Deployment, count: int) -> Deployment:
    """The Management Node and ``count - 1`` Conferencing Nodes, all on DC0_H0."""
    template = base.conferencing[0]
    nodes = tuple(
        dataclasses.replace(template, name=f"pexip-conf-{i:03d}", hostname=f"conf{i:03d}", address=f"10.99.{1 + i // 200}.{1 + i % 200}",
                            sip_tls_fqdn=f"conf{i:03d}.lab.example.com")
        for i in range(1, count)
    )
    hosts = tuple(dataclasses.replace(h, datastore_iops_capacity=count * 1000 + 1000) for h in base.vcenter.hosts)
    return dataclasses.replace(base, conferencing=nodes, vcenter=dataclasses.replace(base.vcenter, hosts=hosts))


async def run(step: str, deployment: Deployment, nodes: tuple[NodeSpec, ...], vc: VCenter,
              concurrency: int) -> tuple[float, dict[str, int], int]:
    """One step for every node; wall time, round trips by SOAP method and changed nodes."""
    systems = Systems(vsphere=vc, pexip=None, console=None, ca=None, directory=None)  # type: ignore[arg-type]
    limit = asyncio.Semaphore(concurrency)

    async def one(node: NodeSpec) -> bool:
        async with limit:
            outcome = await execute(STEPS[step], StepContext(deployment=deployment, node=node, systems=systems))
            return bool(outcome.changes)

    before = vc.statistics()["by_method"]
    start = time.perf_counter()
    changed = await asyncio.gather(*(one(n) for n in nodes))
    wall = time.perf_counter() - start
    after = vc.statistics()["by_method"]
    calls = {m: n - before.get(m, 0) for m, n in after.items() if n > before.get(m, 0)}
    return wall, calls, sum(changed)


async def bench(deployment: Deployment, concurrency: int) -> dict[str, Any]:
    nodes = deployment.nodes
    figures: dict[str, Any] = {"vms": len(nodes), "concurrency": concurrency, "steps": {}, "rerun": {}}
    async with VCenter.from_deployment(deployment, bios_boot_wait_s=0.0, bios_key_pause_s=0.0) as vc:
        await vc.preflight(deployment)
        figures["preflight_round_trips"] = vc.statistics()["round_trips"]
        for step in VM_STEPS:
            wall, calls, changed = await run(step, deployment, nodes, vc, concurrency)
            trips = sum(calls.values())
            figures["steps"][step] = {"wall_s": round(wall, 3), "round_trips": trips, "per_vm": round(trips / len(nodes), 2),
                                      "changed": changed, "by_method": calls}
        for step in VM_STEPS:
            wall, calls, changed = await run(step, deployment, nodes, vc, concurrency)
            figures["rerun"][step] = {"wall_s": round(wall, 3), "per_vm": round(sum(calls.values()) / len(nodes), 2), "changed": changed}
        stats = vc.statistics()
    figures["logins"] = stats["logins"]
    figures["by_method"] = stats["by_method"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=0, help="steps at once (default: all VMs, then 2 as the engine's per-host limit)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    binary = build_vcsim(ROOT / ".lab")
    with tempfile.TemporaryDirectory(prefix="vsphere-bench-") as tmp:
        work = Path(tmp)
        vcsim = start_vcsim(work / "vcsim", binary=binary, pki=make_test_pki(work / "pki"))
        try:
            prepare_inventory(vcsim)
            base = load_deployment(write_lab_config(work / "lab", vcsim))
            results = []
            for concurrency in ([args.concurrency] if args.concurrency else [args.vms, 2]):
                # A fresh inventory per pass: the second pass must import again.
                if results:
                    vcsim.stop()
                    vcsim = start_vcsim(work / "vcsim", binary=binary, pki=make_test_pki(work / "pki"), port=vcsim.port, password=vcsim.password)
                    prepare_inventory(vcsim)
                deployment = fleet(base, args.vms)
                first = len(vcsim.requests())
                figures = asyncio.run(bench(deployment, concurrency))
                figures["vcsim_requests"] = len(vcsim.requests()) - first
                results.append(figures)
        finally:
            vcsim.stop()
    for figures in results:
        print(f"\n{figures['vms']} VMs, {figures['concurrency']} at a time "
              f"(adapter counted {sum(figures['by_method'].values())} SOAP calls, vcsim logged {figures['vcsim_requests']})")
        print(f"  logins per run: {figures['logins']} (target 1); preflight: {figures['preflight_round_trips']} round trips")
        print(f"  {'step':<18} {'wall s':>8} {'trips/VM':>9} {'changed':>8} | rerun: {'wall s':>7} {'trips/VM':>9} {'changed':>8}")
        for step in VM_STEPS:
            s, r = figures["steps"][step], figures["rerun"][step]
            print(f"  {step:<18} {s['wall_s']:>8.3f} {s['per_vm']:>9.2f} {s['changed']:>8} | {'':6} {r['wall_s']:>7.3f} {r['per_vm']:>9.2f} {r['changed']:>8}")
        print(f"  reserved for {figures['vms']} VMs: {figures['steps']['reserve_resources']['wall_s']:.3f} s (target < 1 s)")
        print("  round trips per VM by method:")
        for step in VM_STEPS:
            calls = figures["steps"][step]["by_method"]
            print(f"    {step:<17} " + ", ".join(f"{m} {n / figures['vms']:.2f}" for m, n in sorted(calls.items(), key=lambda kv: -kv[1])))
    if args.json:
        print(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
