"""The real certificate authority of a secure site: a person with a CA, and two folders.

``submit`` writes the node's CSR to ``<inbox>/../outbox/<node>.csr`` for the CA
operator; the signed certificate comes back as ``<inbox>/<node>.pem`` (or through
``orchestrator cert import``, which the engine reads from the journal). The chain to
trust is the PEM file ``pki.ca_chain``.
"""

from __future__ import annotations

from pathlib import Path

from config.errors import Rejected
from config.model import Deployment

__all__ = ["ManualCA"]


class ManualCA:
    # A person signs the CSR, whenever they get to it: not worth polling.
    answers_by_itself = False

    def __init__(self, deployment: Deployment, base: Path | None = None) -> None:
        pki = deployment.pki
        base = base or (Path(deployment.source).parent if deployment.source else Path.cwd())
        self._inbox = base / (pki.inbox or "pki/inbox")
        self._outbox = self._inbox.parent / "outbox"
        self._chain = base / pki.ca_chain if pki.ca_chain else None

    async def submit(self, node: str, csr_pem: str) -> None:
        self._outbox.mkdir(parents=True, exist_ok=True)
        path = self._outbox / f"{node}.csr"
        if not path.exists() or path.read_text() != csr_pem:
            path.write_text(csr_pem)

    async def collect(self, node: str) -> str | None:
        path = self._inbox / f"{node}.pem"
        return path.read_text() if path.is_file() else None

    async def chain(self) -> list[str]:
        if self._chain is None or not self._chain.is_file():
            raise Rejected(f"pki.ca_chain: file {self._chain} does not exist; put the CA chain (PEM) there")
        return [self._chain.read_text()]

    async def aclose(self) -> None:
        return None
