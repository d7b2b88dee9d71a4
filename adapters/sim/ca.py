"""The simulated certificate authority: a test root CA that signs what is submitted.

The root (ECDSA P-256, self-signed) is made once per world and kept in it (system ``ca``),
so a resumed simulation keeps trusting the certificates it already issued. A submitted CSR
is signed after the world's latency (a CA takes a while), once: collecting again returns
the same certificate.
"""

from __future__ import annotations

import time
from typing import Any

from adapters.sim import _pki as pki
from adapters.sim.world import CA, Effect, SimWorld
from config.errors import Rejected
from config.model import Deployment

__all__ = ["SimCA"]

_SYSTEM = "ca"


class SimCA:
    """Twin of :class:`adapters.base.CertificateAuthority` over a :class:`SimWorld`."""

    # Signs every submitted CSR after the world's latency, with no one in between.
    answers_by_itself = True

    def __init__(self, world: SimWorld, deployment: Deployment):
        self._world = world
        self._name = f"{deployment.name} simulated root CA"

    async def submit(self, node: str, csr_pem: str) -> None:
        """Hand ``node``'s CSR to the CA. The same CSR again changes nothing.

        Raises:
            Rejected: not a CSR, or its signature does not verify.
        """
        await self._world.call(_SYSTEM, f"submit CSR of {node}", change=True)
        current = self._world.get(CA, f"csr/{node}")
        if current is not None and current["csr_pem"] == csr_pem:
            return  # these very bytes passed the check below when they were stored (a gate polled again)
        try:
            pki.load_csr(csr_pem)
        except ValueError as exc:
            raise Rejected(f"the CA refuses the CSR of {node}: {exc}", system=_SYSTEM) from exc
        request = {"csr_pem": csr_pem, "ready_at": time.time() + self._world.jitter(), "cert_pem": None}
        await self._world.apply([(CA, f"csr/{node}", request)])

    async def collect(self, node: str) -> str | None:
        """The signed certificate once the CA has returned it, else ``None``."""
        await self._world.call(_SYSTEM, f"collect certificate of {node}", change=False)
        request = self._world.get(CA, f"csr/{node}")
        if request is None or (request["cert_pem"] is None and time.time() < request["ready_at"]):
            return None
        if request["cert_pem"] is not None:
            return str(request["cert_pem"])
        root = await self._root()
        # Its signature was checked by submit(), the only way into the store.
        cert = pki.sign_csr(request["csr_pem"], root["key_pem"], root["cert_pem"], trusted=True)
        # Between reading the request and apply() nothing awaits: two collectors of the
        # same CSR cannot both sign it.
        if self._world.get(CA, f"csr/{node}") is not request:
            return await self.collect(node)
        await self._world.apply([(CA, f"csr/{node}", {**request, "cert_pem": cert})], [Effect(node, "cert_sign", "")])
        return cert

    async def chain(self) -> list[str]:
        """The trusted chain to upload: the root only (no intermediates here)."""
        await self._world.call(_SYSTEM, "chain", change=False)
        return [str((await self._root())["cert_pem"])]

    async def withdraw(self, node: str) -> None:
        """Forget ``node``'s CSR and its certificate (a renewal CSR follows)."""
        await self._world.call(_SYSTEM, f"withdraw CSR of {node}", change=True)
        if self._world.get(CA, f"csr/{node}") is not None:
            await self._world.apply([(CA, f"csr/{node}", None)])

    async def aclose(self) -> None:
        """Nothing to release: the state is in the world."""

    async def __aenter__(self) -> SimCA:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _root(self) -> dict[str, Any]:
        root = self._world.get(CA, "root")
        if root is None:
            # ECDSA P-256, a root key type CAs issue from: an RSA 2048 signature costs ~1.1 ms per
            # certificate, over a second of a 1,000-node simulation (issue #11). A root kept in an
            # older world (RSA) still signs.
            key_pem, cert_pem = pki.make_root(self._name, "ECDSAP256")
            root = {"key_pem": key_pem, "cert_pem": cert_pem}
            await self._world.apply([(CA, "root", root)])
            root = self._world.get(CA, "root")
        return root  # type: ignore[no-any-return]
