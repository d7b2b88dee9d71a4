"""Benchmark: the real LDAP directory (adapters/ldap/) against a private slapd (issue #9).

Median wall time over N rounds of ``verify_bind`` (a new connection: TCP, StartTLS, bind, three
base searches) and of ``user_groups`` (two searches on the kept connection), over StartTLS and
over ldaps, against targets of 30 ms and 10 ms (OK / MISSED). Without TCP_NODELAY, the first operation after a TLS 1.3
handshake waits about 40 ms for a delayed ACK (test-peers.md): ``verify_bind`` would miss.
Needs slapd (scripts/setup.sh installs it). Prints figures; asserts nothing.

    .venv/bin/python bench/ldap_bench.py [--rounds 30]
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

from _sim_factory import make_deployment  # tests/adapters: the test peers' helpers

from adapters.ldap import LdapDirectory
from config.model import Deployment
from orchestrator.lab import make_test_pki
from orchestrator.lab._slapd import running_slapd

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
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
    for transport, times in results.items():
        for name, target in TARGETS_MS.items():
            median = 1000 * statistics.median(times[name])
            verdict = "OK" if median <= target else "MISSED"
            best = 1000 * min(times[name])
            print(
                f"{transport:8s} {name:12s} median {median:6.1f} ms  (best {best:5.1f}; target {target:.0f}) {verdict}"
            )


if __name__ == "__main__":
    main()
