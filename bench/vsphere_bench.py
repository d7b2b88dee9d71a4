"""Benchmark: the real vSphere adapter on vcsim — round trips, logins, wall time.

Targets (issue #3): at most 5 SOAP round trips per VM per step, 1 login per run, and
under 1 s to take 50 VMs through ``reserved``. Issue #11 (100 VMs on one datastore, ``--vms 100``):
reserve at most 2 requests per VM, deploy + reserve at most 8, a second pass at most 1 per VM
and no write; ``--scale`` prints deploy + reserve for 10, 50, 100 and 200 VMs, each a whole
process of its own (imports, login, both steps), per VM (target: 100 VMs in at most 2.5 s, and
the wall time per VM falling as VMs are added), run ``--repeat`` times interleaved (medians), with
per VM and per phase the requests, the client's CPU (every thread), vcsim's CPU and the number of
reads of every VM's brief (each the size of the inventory); ``--profile DIR`` adds a cProfile of
every thread and the functions whose CPU per VM grew from the smallest count to the largest.
With every VM at once or 2 at a time (the engine's per-host limit) the reads of every VM's brief
are the preflight's alone (the briefs are kept current from then on), so the work per VM does not
grow with the inventory; a count that does is printed.
Drives the orchestrator's own steps
(``deploy_ova``, ``reserve_resources``, ``lock_bios``: observe, diff, apply, verify)
through :class:`adapters.vsphere.VCenter` against a vcsim started here with TLS.
Round trips are counted by the adapter (every SOAP call) and cross-checked with
vcsim's request log; each step's are also broken down by SOAP method. Prints figures;
asserts nothing.

    .venv/bin/python bench/vsphere_bench.py [--vms 100] [--concurrency 100]
    .venv/bin/python bench/vsphere_bench.py --scale [10 50 100 200] [--repeat 3] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import os
import resource
import statistics
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
            return outcome is not None and bool(outcome.changes)

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
            inventory_reads = vc.statistics()["inventory_reads"]
            wall, calls, changed = await run(step, deployment, nodes, vc, concurrency)
            trips = sum(calls.values())
            figures["steps"][step] = {
                "inventory_reads": vc.statistics()["inventory_reads"] - inventory_reads,
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


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def deploy_and_reserve(deployment: Deployment, vcsim_pid: int) -> dict[str, Any]:
    """The child of ``--scale``: deploy_ova then reserve_resources for every VM at once.

    Per phase: wall time, this process's CPU (every thread), vcsim's CPU and the requests by
    method, and the reads of every VM's brief (each the size of the inventory: their number must
    not grow with the VMs). "start" is everything before the first step (imports, configuration);
    the login is in deploy_ova's figures.
    """
    nodes = deployment.nodes
    phases: dict[str, dict[str, Any]] = {}
    async with VCenter.from_deployment(deployment, bios_boot_wait_s=0.0, bios_key_pause_s=0.0) as vc:
        phases["start"] = {
            "cpu_s": time.process_time(),
            "vcsim_cpu_s": _cpu_of(vcsim_pid),
            "requests": vc.statistics()["round_trips"],
        }
        for step in ("deploy_ova", "reserve_resources"):
            cpu, vcsim_cpu = time.process_time(), _cpu_of(vcsim_pid)
            inventory_reads = vc.statistics()["inventory_reads"]
            wall, calls, _changed = await run(step, deployment, nodes, vc, len(nodes))
            phases[step] = {
                "wall_s": wall,
                "cpu_s": time.process_time() - cpu,
                "vcsim_cpu_s": _cpu_of(vcsim_pid) - vcsim_cpu,
                "requests": sum(calls.values()),
                "by_method": calls,
                "inventory_reads": vc.statistics()["inventory_reads"] - inventory_reads,
            }
        stats = vc.statistics()
    return {"phases": phases, "round_trips": stats["round_trips"]}


def _one_scale_run(
    work: Path, count: int, binary: Path, pki: Any, run: int, profile_dir: Path | None
) -> dict[str, Any] | None:
    """Deploy + reserve of ``count`` VMs in a fresh vcsim, by a child process timed whole."""
    from orchestrator.lab import prepare_inventory, start_vcsim, write_lab_config

    vcsim = start_vcsim(work / f"vcsim-{count}-{run}", binary=binary, pki=pki)
    try:
        prepare_inventory(vcsim)
        with contextlib.redirect_stderr(io.StringIO()):  # the journal key's notice
            config = write_lab_config(work / f"lab-{count}-{run}", vcsim)
        vcsim_cpu = _cpu_of(vcsim.pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        command = [sys.executable, __file__, "--child", str(config), "--vms", str(count), "--vcsim-pid", str(vcsim.pid)]
        if profile_dir is not None:
            command += ["--profile", str(profile_dir / f"vms-{count}-{run}.pstats")]
        start = time.perf_counter()
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
        )
        whole = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        vcsim_cpu = _cpu_of(vcsim.pid) - vcsim_cpu
    finally:
        vcsim.stop()
    if done.returncode != 0:
        print(f"  {count:>5} failed: {done.stderr[-800:]}")
        return None
    child = json.loads(done.stdout.strip().splitlines()[-1])
    child["whole_s"] = whole
    child["client_cpu_s"] = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    child["vcsim_cpu_s"] = vcsim_cpu
    return dict(child)


def scale(counts: list[int], binary: Path, repeat: int, profile_dir: Path | None = None) -> None:
    """Deploy + reserve of N VMs, each N in a fresh vcsim and a process of its own, timed whole.

    The counts run interleaved (10 50 100 200 10 50 ...) ``repeat`` times; medians are printed.
    Per VM and per phase: requests, the client's CPU (every thread) and vcsim's CPU, to tell a
    cost growing with the VM count on our side from one on the simulator's.
    """
    from orchestrator.lab import make_test_pki

    runs: dict[int, list[dict[str, Any]]] = {count: [] for count in counts}
    with tempfile.TemporaryDirectory(prefix="vsphere-scale-") as tmp:
        work = Path(tmp)
        pki = make_test_pki(work / "pki")
        for run in range(repeat):
            for count in counts:
                one = _one_scale_run(work, count, binary, pki, run, profile_dir)
                if one is not None:
                    runs[count].append(one)
    med = statistics.median
    print(f"deploy + reserve, whole process each (imports, login, both steps, all VMs at once); median of {repeat}:")
    print(
        f"  {'VMs':>5} {'process s':>10} {'per VM ms':>10} {'in-process s':>13} {'requests/VM':>12} "
        f"{'client CPU ms/VM':>17} {'vcsim CPU ms/VM':>16}"
    )
    for count, figures in runs.items():
        if not figures:
            continue
        whole = med(f["whole_s"] for f in figures)
        inner = med(sum(p["wall_s"] for n, p in f["phases"].items() if n != "start") for f in figures)
        verdict = f"  target <= 2.5 s: {_ok(whole <= 2.5)}" if count == 100 else ""
        print(
            f"  {count:>5} {whole:>10.2f} {whole / count * 1000:>10.1f} {inner:>13.2f} "
            f"{med(f['round_trips'] for f in figures) / count:>12.2f} "
            f"{med(f['client_cpu_s'] for f in figures) / count * 1000:>17.1f} "
            f"{med(f['vcsim_cpu_s'] for f in figures) / count * 1000:>16.1f}{verdict}"
        )
    print(
        "  per phase, per VM (medians): wall ms / requests / client CPU ms / vcsim CPU ms "
        "[reads of the whole inventory in the phase]"
    )
    for phase in ("start", "deploy_ova", "reserve_resources"):
        cells = []
        for count, figures in runs.items():
            if not figures:
                continue
            ph = [f["phases"][phase] for f in figures]
            wall = f"{med(p.get('wall_s', 0.0) for p in ph) / count * 1000:.1f}" if phase != "start" else "-"
            requests, cpu = med(p["requests"] for p in ph), med(p["cpu_s"] for p in ph)
            vcsim_cpu = med(p["vcsim_cpu_s"] for p in ph)
            whole_reads = f" [{med(p['inventory_reads'] for p in ph):g}]" if phase != "start" else ""
            cells.append(
                f"{count}: {wall} / {requests / count:.2f} / {cpu / count * 1000:.1f} / {vcsim_cpu / count * 1000:.1f}"
                + whole_reads
            )
        print(f"    {phase:<18} " + "; ".join(cells))
    last = [c for c in counts if runs[c]]
    if len(last) >= 2:
        per_vm = [med(f["whole_s"] for f in runs[c]) / c for c in last]
        falling = all(b < a for a, b in zip(per_vm, per_vm[1:], strict=False))
        print(f"  wall time per VM falling as VMs are added ({' > '.join(map(str, last))}): {_ok(falling)}")
    if profile_dir is not None and len(last) >= 2:
        from _vsphere_profile import grown  # bench/, the script's directory

        grown(profile_dir, last)


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
    parser.add_argument("--repeat", type=int, default=3, help="--scale: runs of each VM count, interleaved (default 3)")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="--scale: cProfile every thread of each child into DIR and print what grew per VM (slower)",
    )
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--vcsim-pid", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="steps at once (default: all VMs, then 2 as the engine's per-host limit)",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    if args.child:
        deployment = fleet(load_deployment(Path(args.child)), args.vms)
        if args.profile:
            # Only when asked: cProfile and pstats are not the orchestrator's imports (the child is timed whole).
            from _vsphere_profile import ThreadProfiles  # bench/, the script's directory

            with ThreadProfiles() as profiles:
                figures = asyncio.run(deploy_and_reserve(deployment, args.vcsim_pid))
                profiles.dump(Path(args.profile))
        else:
            figures = asyncio.run(deploy_and_reserve(deployment, args.vcsim_pid))
        print(json.dumps(figures))
        return
    # The lab only here: the child of --scale stands for the orchestrator's process, which never imports it.
    from orchestrator.lab import build_vcsim, make_test_pki, prepare_inventory, start_vcsim, write_lab_config

    binary = build_vcsim(ROOT / ".lab")
    if args.scale is not None:
        profile_dir = Path(args.profile) if args.profile else None
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
        scale(args.scale or [10, 50, 100, 200], binary, args.repeat, profile_dir)
        return
    with tempfile.TemporaryDirectory(prefix="vsphere-bench-") as tmp:
        work = Path(tmp)
        vcsim = start_vcsim(work / "vcsim", binary=binary, pki=make_test_pki(work / "pki"))
        try:
            prepare_inventory(vcsim)
            base = load_deployment(write_lab_config(work / "lab", vcsim))
            results: list[dict[str, Any]] = []
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
        reads = {step: figures["steps"][step]["inventory_reads"] for step in VM_STEPS}
        print(
            "  reads of every VM's brief (each the size of the inventory): "
            + ", ".join(f"{step} {n}" for step, n in reads.items())
            + (
                f" -- {sum(reads.values()) / figures['vms']:.2f} per VM: the work per VM grows with the inventory"
                if sum(reads.values()) >= figures["vms"]
                else ""
            )
        )
    if args.json:
        print(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
