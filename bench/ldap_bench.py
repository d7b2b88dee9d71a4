"""Benchmark: the real LDAP directory (adapters/ldap/) against a private slapd (issue #9).

Median wall time over N rounds of ``verify_bind`` (a new connection: TCP, StartTLS, bind, three
base searches) and of ``user_groups`` (two searches on the kept connection), over StartTLS and
over ldaps, against targets of 30 ms and 10 ms (OK / MISSED). Without TCP_NODELAY, the first operation after a TLS 1.3
handshake waits about 40 ms for a delayed ACK (test-peers.md): ``verify_bind`` would miss.

Then the ``ldap_authenticated`` milestone of a Management Node over the network (issue #9, Benchmarks): the real
Management API client against the lab's HTTPS server, whose logins bind to the same slapd on every request an
LDAP identity makes (as a Manager does, pexip-api.md 7.5), the orchestrator's own directory real too. Each run
drives a fresh world to ``certified`` first, then times the milestone (the fake clock: no retry waits), and
prints its wall time, the API requests it made, the LDAP binds the server counted for them, and the binds per
request once the Manager is LDAP-only with client certificates (probe GETs as the orchestrator).
Needs slapd (scripts/setup.sh installs it). Prints figures; asserts nothing.

    .venv/bin/python bench/ldap_bench.py [--rounds 30] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "adapters")]

from _https_manager import https_manager  # tests/adapters: the test peers' helpers
from _sim_factory import make_deployment

from adapters.ldap import LdapDirectory
from adapters.pexip import HttpPexipApi
from adapters.sim import SimWorld
from config.model import Deployment
from orchestrator import api
from orchestrator.clock import FakeClock
from orchestrator.lab import make_test_pki
from orchestrator.lab._slapd import running_slapd
from orchestrator.logs import configure_logging

TARGETS_MS = {"verify_bind": 30.0, "user_groups": 10.0}


async def measure(deployment: Deployment, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in TARGETS_MS}
    async with LdapDirectory.from_deployment(deployment) as directory:
        for _ in range(rounds):
            start = time.perf_counter()
            await directory.verify_bind()
            times["verify_bind"].append(time.perf_counter() - start)
            start = time.perf_counter()
            groups = await directory.user_groups(deployment.ldap.verify_user)
            times["user_groups"].append(time.perf_counter() - start)
            assert len(groups) == len(deployment.ldap.role_mappings), groups
    return times


PROBES = 20  # GETs as the orchestrator once the Manager is LDAP-only: each should cost one bind


async def milestone(deployment: Deployment, work: Path) -> dict[str, float]:
    """One Management Node driven to ``certified``, then through ``ldap_authenticated`` (timed) over HTTPS."""
    work.mkdir(parents=True)
    world = SimWorld.open(work / "world.sqlite")
    try:
        async with https_manager(world, deployment, work) as (real, server, _):
            with api.open_journal(work / "journal.sqlite") as journal:
                drive = {"world": world, "hooks": world, "auto_approve": True, "clock": FakeClock()}
                assert (await api.drive(real, journal, until="certified", **drive)).exit_code == 0
                requests, binds = server.requests.total(), server.ldap_binds
                started = time.perf_counter()
                report = await api.drive(real, journal, **drive)
                wall = time.perf_counter() - started
                assert report.exit_code == 0, report.outcomes
                assert {n.state for n in journal.nodes()} == {"ldap_authenticated"}
            figures = {
                "wall_ms": 1000 * wall,
                "requests": server.requests.total() - requests,
                "binds": server.ldap_binds - binds,
            }
            probe = HttpPexipApi(real.pexip_api, ldap=real.ldap)
            try:
                await probe.get(_GLOBAL)  # the client settles on its certificate first
                requests, binds = server.requests.total(), server.ldap_binds
                for _ in range(PROBES):
                    await probe.get(_GLOBAL)
                figures["after_requests"] = server.requests.total() - requests
                figures["after_binds"] = server.ldap_binds - binds
            finally:
                await probe.aclose()
            return figures
    finally:
        await world.aclose()


_GLOBAL = "/api/admin/configuration/v1/global/1/"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5, help="runs of the ldap_authenticated milestone")
    args = parser.parse_args()
    configure_logging("WARNING")  # the figures, not the runs' log
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        deployment = make_deployment(1, work)
        pki = make_test_pki(work / "pki", name="slapd", ca_name="LDAP Bench CA")
        started = time.perf_counter()
        with running_slapd(work / "slapd", deployment.ldap, pki) as server:
            print(f"slapd loaded and listening: {1000 * (time.perf_counter() - started):.0f} ms")
            results = {
                transport: asyncio.run(measure(server.pointed_at(deployment, transport), args.rounds))
                for transport in ("starttls", "ldaps")
            }
            runs = [asyncio.run(milestone(server.pointed_at(deployment), work / f"run-{i}")) for i in range(args.runs)]
    for transport, times in results.items():
        for name, target in TARGETS_MS.items():
            median = 1000 * statistics.median(times[name])
            verdict = "OK" if median <= target else "MISSED"
            best = 1000 * min(times[name])
            print(
                f"{transport:8s} {name:12s} median {median:6.1f} ms  (best {best:5.1f}; target {target:.0f}) {verdict}"
            )
    walls = [r["wall_ms"] for r in runs]
    last = runs[-1]
    print(
        f"ldap_authenticated milestone over HTTPS + slapd: median {statistics.median(walls):.0f} ms "
        f"(best {min(walls):.0f}, worst {max(walls):.0f}; {len(runs)} runs)"
    )
    print(
        f"  API requests {last['requests']:.0f}, LDAP binds by the Manager {last['binds']:.0f}: "
        f"{last['binds'] / last['requests']:.2f} binds per request in the milestone "
        "(local-admin requests bind nothing)"
    )
    print(
        f"  once LDAP-only with client certificates: {last['after_binds']:.0f} binds for "
        f"{last['after_requests']:.0f} requests = {last['after_binds'] / last['after_requests']:.2f} per request"
    )


if __name__ == "__main__":
    main()
