"""The simulated provisioning interface of each Conferencing Node: a twin of
:class:`adapters.base.NodeProvisioning` over the world.

A Conferencing Node deployed from the generic OVA boots into a provisioning interface on
tcp/8443 and waits for its bootstrap file (``pexip-api.md`` 7.3). The twin answers once the
node's VM runs, takes one file per node and keeps only its SHA-256 in the world
(:data:`adapters.sim._manager.PROVISIONED`); the Pexip twin reports the node SYNCED only when
that digest is the one of the file the Manager issued for the node's current worker_vm.
"""

from __future__ import annotations

import hashlib

from adapters.sim._manager import PROVISIONED
from adapters.sim.world import VM, Effect, SimWorld
from config.errors import Rejected, Unreachable
from config.model import CONFERENCING, Deployment, NodeSpec

__all__ = ["SimProvisioning"]

_SYSTEM = "provisioning"


class SimProvisioning:
    """Twin of :class:`adapters.base.NodeProvisioning` over a :class:`SimWorld`."""

    def __init__(self, world: SimWorld, deployment: Deployment):
        self._world = world
        self._deployment = deployment

    async def upload_bootstrap(self, node: NodeSpec, body: bytes) -> None:
        """Take ``node``'s bootstrap file; the same file again is accepted, another one refused."""
        where = f"{node.name}'s provisioning interface (https://{node.address}:8443/)"
        await self._world.call(_SYSTEM, f"upload to {node.name}", change=True)
        if node.role != CONFERENCING:
            raise Rejected(f"{node.name} is a Management Node: it has no provisioning interface", system=_SYSTEM)
        vm = self._world.get(VM, node.name)
        if vm is None or vm.get("power_state") != "poweredOn":
            raise Unreachable(f"{where} does not answer: the node's VM is not running yet", system=_SYSTEM)
        if not body:
            raise Rejected(f"{where} refused an empty bootstrap file", system=_SYSTEM)
        sha = hashlib.sha256(body).hexdigest()
        taken = self._world.get(PROVISIONED, node.name)
        if taken is not None:
            if taken["sha256"] == sha:
                return  # a replay: the node already has this very file
            raise Rejected(
                f"{where}: the node already took another bootstrap file (sha256 {taken['sha256'][:16]}); "
                "redeploy its VM from the generic OVA to provision it again",
                system=_SYSTEM,
            )
        await self._world.apply(
            [(PROVISIONED, node.name, {"sha256": sha})], [Effect(node.name, "bootstrap_upload", "provisioning")]
        )

    async def aclose(self) -> None:
        """Nothing to release: the state is in the world."""
