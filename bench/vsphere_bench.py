"""Benchmark: the real vSphere adapter on vcsim — round trips, logins, wall time.

Targets (issue #3): at most 5 SOAP round trips per VM per step, 1 login per run, and
under 1 s to take 50 VMs through ``reserved``. Issue #11 (100 VMs on one datastore, ``--vms 100``):
reserve at most 2 requests per VM, deploy + reserve at most 8, a second pass at most 1 per VM
and no write; ``--scale`` prints deploy + reserve for 10, 50, 100 and 200 VMs, each a whole
process of its own (imports, login, both steps), per VM (target: 100 VMs in at most 2.5 s).
Drives the orchestrator's own steps
(``deploy_ova``, ``reserve_resources``, ``lock_bios``: observe, diff, apply, verify)
through :class:`adapters.vsphere.VCenter` against a vcsim started here with TLS.
Round trips are counted by the adapter (every SOAP call) and cross-checked with
vcsim's request log; each step's are also broken down by SOAP method. Prints figures;
asserts nothing.

    .venv/bin/python bench/vsphere_bench.py [--vms 100] [--concurrency 100]
    .venv/bin/python bench/vsphere_bench.py --scale [10 50 100 200]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
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
from orchestrator.steps import STEPS, StepContext, execute

VM_STEPS = ("deploy_ova", "reserve_resources", "lock_bios")
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
        "CreateImportSpec",
    }
)


def fleet(base: Deployment, count: int) -> Deployment:
    """The Management Node and ``count - 1`` Conferencing Nodes, all on DC0_H0."""
    template = base.conferencing[0]
    nodes = tuple(
        dataclasses.replace(
            template,
            name=f"pexip-conf-{i:03d}",
            hostname=f"conf{i:03d}",
            address=f"10.99.{1 + i // 200}.{1 + i % 200}",
            sip_tls_fqdn=f"conf{i:03d}.lab.example.com",
        )
        for i in range(1, count)
    )
    hosts = tuple(dataclasses.replace(h, datastore_iops_capacity=count * 1000 + 1000) for h in base.vcenter.hosts)
    return dataclasses.replace(base, conferencing=nodes, vcenter=dataclasses.replace(base.vcenter, hosts=hosts))


async def run(
    step: str, deployment: Deployment, nodes: tuple[NodeSpec, ...], vc: VCenter, concurrency: int
) -> tuple[float, dict[str, int], int]:
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
            figures["steps"][step] = {
                "wall_s": round(wall, 3),
                "round_trips": trips,
                "per_vm": round(trips / len(nodes), 2),
                "changed": changed,
                "by_method": calls,
            }
        for step in VM_STEPS:
            wall, calls, changed = await run(step, deployment, nodes, vc, concurrency)
            figures["rerun"][step] = {
                "wall_s": round(wall, 3),
                "per_vm": round(sum(calls.values()) / len(nodes), 2),
                "changed": changed,
                "writes": sum(n for m, n in calls.items() if m in WRITES),
            }
        stats = vc.statistics()
    figures["logins"] = stats["logins"]
    figures["by_method"] = stats["by_method"]
    return figures


def _ok(met: bool) -> str:
    return "OK" if met else "MISSED"


async def deploy_and_reserve(deployment: Deployment) -> dict[str, Any]:
    """The child of ``--scale``: deploy_ova then reserve_resources for every VM at once."""
    nodes = deployment.nodes
    async with VCenter.from_deployment(deployment, bios_boot_wait_s=0.0, bios_key_pause_s=0.0) as vc:
        walls = {}
        for step in ("deploy_ova", "reserve_resources"):
            wall, _calls, _changed = await run(step, deployment, nodes, vc, len(nodes))
            walls[step] = round(wall, 3)
        stats = vc.statistics()
    return {"walls": walls, "round_trips": stats["round_trips"]}


def scale(counts: list[int], binary: Path) -> None:
    """Deploy + reserve of N VMs, each N in a fresh vcsim and a process of its own, timed whole."""
    from orchestrator.lab import make_test_pki, prepare_inventory, start_vcsim, write_lab_config

    print("deploy + reserve, whole process each (imports, login, both steps, all VMs at once):")
    print(f"  {'VMs':>5} {'process s':>10} {'per VM ms':>10} {'in-process s':>13} {'requests/VM':>12}")
    with tempfile.TemporaryDirectory(prefix="vsphere-scale-") as tmp:
        work = Path(tmp)
        pki = make_test_pki(work / "pki")
        for count in counts:
            vcsim = start_vcsim(work / f"vcsim-{count}", binary=binary, pki=pki)
            try:
                prepare_inventory(vcsim)
                config = write_lab_config(work / f"lab-{count}", vcsim)
                start = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(config), "--vms", str(count)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                whole = time.perf_counter() - start
            finally:
                vcsim.stop()
            if done.returncode != 0:
                print(f"  {count:>5} failed: {done.stderr[-800:]}")
                continue
            child = json.loads(done.stdout.strip().splitlines()[-1])
            inner = sum(child["walls"].values())
            verdict = f"  target <= 2.5 s: {_ok(whole <= 2.5)}" if count == 100 else ""
            print(
                f"  {count:>5} {whole:>10.2f} {whole / count * 1000:>10.1f} {inner:>13.2f} "
                f"{child['round_trips'] / count:>12.2f}{verdict}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument(
        "--scale",
        type=int,
        nargs="*",
        default=None,
        help="deploy + reserve for these VM counts (default 10 50 100 200)",
    )
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="steps at once (default: all VMs, then 2 as the engine's per-host limit)",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(deploy_and_reserve(fleet(load_deployment(Path(args.child)), args.vms)))))
        return
    # The lab only here: the child of --scale stands for the orchestrator's process, which never imports it.
    from orchestrator.lab import build_vcsim, make_test_pki, prepare_inventory, start_vcsim, write_lab_config

    binary = build_vcsim(ROOT / ".lab")
    if args.scale is not None:
        scale(args.scale or [10, 50, 100, 200], binary)
        return
    with tempfile.TemporaryDirectory(prefix="vsphere-bench-") as tmp:
        work = Path(tmp)
        vcsim = start_vcsim(work / "vcsim", binary=binary, pki=make_test_pki(work / "pki"))
        try:
            prepare_inventory(vcsim)
            base = load_deployment(write_lab_config(work / "lab", vcsim))
            results = []
            for concurrency in [args.concurrency] if args.concurrency else [args.vms, 2]:
                # A fresh inventory per pass: the second pass must import again.
                if results:
                    vcsim.stop()
                    vcsim = start_vcsim(
                        work / "vcsim",
                        binary=binary,
                        pki=make_test_pki(work / "pki"),
                        port=vcsim.port,
                        password=vcsim.password,
                    )
                    prepare_inventory(vcsim)
                deployment = fleet(base, args.vms)
                first = len(vcsim.requests())
                figures = asyncio.run(bench(deployment, concurrency))
                figures["vcsim_requests"] = len(vcsim.requests()) - first
                results.append(figures)
        finally:
            vcsim.stop()
    for figures in results:
        print(
            f"\n{figures['vms']} VMs, {figures['concurrency']} at a time "
            f"(adapter counted {sum(figures['by_method'].values())} SOAP calls, vcsim logged "
            f"{figures['vcsim_requests']})"
        )
        print(
            f"  logins per run: {figures['logins']} (target 1); preflight: {figures['preflight_round_trips']} round "
            "trips"
        )
        print(
            f"  {'step':<18} {'wall s':>8} {'trips/VM':>9} {'changed':>8} | rerun: {'wall s':>7} {'trips/VM':>9} "
            f"{'changed':>8}"
        )
        for step in VM_STEPS:
            s, r = figures["steps"][step], figures["rerun"][step]
            print(
                f"  {step:<18} {s['wall_s']:>8.3f} {s['per_vm']:>9.2f} {s['changed']:>8} | {'':6} {r['wall_s']:>7.3f} "
                f"{r['per_vm']:>9.2f} {r['changed']:>8}"
            )
        print(
            f"  reserved for {figures['vms']} VMs: {figures['steps']['reserve_resources']['wall_s']:.3f} s (target < "
            "1 s)"
        )
        steps, rerun = figures["steps"], figures["rerun"]
        reserve = steps["reserve_resources"]["per_vm"]
        both = steps["deploy_ova"]["per_vm"] + reserve
        second = sum(r["per_vm"] for r in rerun.values())
        writes = sum(r["writes"] for r in rerun.values())
        print(
            f"  requests per VM: reserve {reserve:.2f} (target <= 2: {_ok(reserve <= 2)}); deploy + reserve {both:.2f} "
            f"(target <= 8: {_ok(both <= 8)}); second pass, all steps {second:.2f} (target <= 1: {_ok(second <= 1)}), "
            f"writes {writes} (target 0: {_ok(writes == 0)})"
        )
        print("  round trips per VM by method:")
        for step in VM_STEPS:
            calls = figures["steps"][step]["by_method"]
            print(
                f"    {step:<17} "
                + ", ".join(f"{m} {n / figures['vms']:.2f}" for m, n in sorted(calls.items(), key=lambda kv: -kv[1]))
            )
    if args.json:
        print(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
