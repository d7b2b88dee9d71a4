"""Benchmark: the real Management API client against the lab's HTTPS simulator of the Manager (issue #8).

One run takes the Management Node and N Conferencing Nodes (default 2) to ``ldap_authenticated``
with ``pexip_api`` real (adapters/pexip/ against adapters/sim/servers/pexip_http.py) and the nodes
provisioned over HTTPS; the rest (vSphere, console, LDAP, CA) is simulated. Steps run one at a time
so that every request is counted against the step that sent it. Prints, per step, the API's reads
(GET) and writes (POST, PATCH, DELETE), then a second run's (target: no write), and each run's wall
time. Prints figures; asserts nothing (exit 1 when the second run writes).

    .venv/bin/python bench/pexip_bench.py [--nodes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from adapters.sim import SimDirectory  # noqa: E402 - after the path set-up above
from adapters.sim.servers._pexip_auth import make_client_identity  # noqa: E402
from adapters.sim.servers.pexip_http import PexipServer  # noqa: E402
from adapters.sim.servers.provisioning_http import ProvisioningServers  # noqa: E402
from adapters.sim.world import SimWorld  # noqa: E402
from config.load import simulated_deployment  # noqa: E402
from config.secrets import Secret  # noqa: E402
from orchestrator import api  # noqa: E402
from orchestrator.clock import FakeClock  # noqa: E402
from orchestrator.logs import configure_logging  # noqa: E402

_WRITES = ("POST", "PATCH", "DELETE", "PUT")


class StepCounter:
    """Engine hooks (the world's, passed on) that charge the server's requests to the step that runs."""

    def __init__(self, world: SimWorld, server: PexipServer):
        self._world, self._server = world, server
        self._current: str | None = None
        self._seen: Counter[tuple[str, int]] = Counter()
        self.per_step: dict[str, Counter[str]] = {}

    def _charge(self) -> None:
        now = Counter(self._server.requests)
        if self._current is not None:
            spent = self.per_step.setdefault(self._current, Counter())
            for (method, _), n in (now - self._seen).items():
                spent["writes" if method in _WRITES else "reads"] += n
        self._seen = now

    def before_step(self, node: str, step: str) -> None:
        self._charge()
        self._current = step
        self._world.before_step(node, step)

    def after_apply(self, node: str, step: str) -> None:
        self._world.after_apply(node, step)

    def finish(self) -> None:
        self._charge()
        self._current = None


async def bench(nodes: int, work: Path) -> int:
    deployment = simulated_deployment(nodes + 1, work / "world.d")
    serial = dataclasses.replace(
        deployment.policy, concurrency=dataclasses.replace(deployment.policy.concurrency, max_nodes=1)
    )
    deployment = dataclasses.replace(deployment, policy=serial)
    world = SimWorld.open(work / "world.sqlite")
    client = make_client_identity(work / "client", deployment.ldap.verify_user, deployment.ldap.client_certificate)
    provisioning = ProvisioningServers(world, deployment, work / "provisioning", poll_s=0.002)
    server = PexipServer(
        world, deployment, SimDirectory(world, deployment), work / "pexip", client_ca_file=client.ca_file
    )
    second_writes = 0
    try:
        await provisioning.start()
        await server.__aenter__()
        port = server.url.rsplit(":", 1)[1]
        real = dataclasses.replace(
            deployment,
            conferencing=tuple(
                dataclasses.replace(
                    n,
                    provisioning_url=provisioning.url(n.name),
                    provisioning_thumbprint=provisioning.thumbprint(n.name),
                )
                for n in deployment.conferencing
            ),
            pexip_api=dataclasses.replace(
                deployment.pexip_api,
                mode="real",
                url=f"https://{deployment.management.fqdn}:{port}",
                address="127.0.0.1",
                ca_file=str(server.cert_file),
                client_cert=str(client.cert_file),
                client_key=Secret(f"file:{client.key_file}"),
            ),
        )
        for label in ("first run", "second run"):
            hooks = StepCounter(world, server)
            started = time.perf_counter()
            with api.open_journal(work / "journal.sqlite") as journal:
                report = await api.drive(real, journal, world=world, hooks=hooks, auto_approve=True, clock=FakeClock())
            hooks.finish()
            elapsed = time.perf_counter() - started
            reads = sum(c["reads"] for c in hooks.per_step.values())
            writes = sum(c["writes"] for c in hooks.per_step.values())
            print(f"{label}: exit {report.exit_code}, {elapsed:.2f} s, API reads {reads}, writes {writes}")
            _table(hooks.per_step)
            if label == "second run":
                second_writes = writes
        verdict = "OK" if second_writes == 0 else "MISSED"
        print(f"second run writes: {second_writes} (target 0) {verdict}")
    finally:
        await server.__aexit__(None, None, None)
        await provisioning.aclose()
        await world.aclose()
    return 0 if second_writes == 0 else 1


def _table(per_step: dict[str, Any]) -> None:
    for step, counts in sorted(per_step.items(), key=lambda kv: -sum(kv[1].values())):
        if counts:
            print(f"  {step:32s} reads {counts['reads']:4d}  writes {counts['writes']:4d}")


def main() -> None:
    configure_logging("WARNING")  # the figures, not the run's log
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="Conferencing Nodes (besides the Management Node)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(asyncio.run(bench(args.nodes, Path(tmp))))


if __name__ == "__main__":
    main()
