"""The real certificate authority of a secure site: a person with a CA, and two folders.

``submit`` writes the node's CSR to ``<inbox>/../outbox/<subject-name>.csr`` for the CA
operator, named as Pexip's own generator names its download (the subject name: the node's FQDN,
or its IP address with ``pki.subject = "address"``); the signed certificate comes back as
``<inbox>/<subject-name>.pem`` or ``.crt`` (PEM, or DER as some CAs send a ``.crt``), or through
``orchestrator cert import``, which the engine reads from the journal. The chain to trust is the
PEM file ``pki.ca_chain``.

A certificate in the inbox older than the CSR last submitted, and not for its key, is the
answer to an earlier CSR: ``collect`` ignores it. One dropped after the CSR is returned
whatever it holds, for the checks before installing to accept or refuse with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from config.errors import Rejected
from config.model import Deployment

__all__ = ["ManualCA", "load_csr", "certificate_for", "read_certificate_file", "write_atomically"]

_SYSTEM = "ca"
# What a CA sends back: "typically with a .CRT or .PEM extension" (the guide).
_SIGNED_SUFFIXES = (".pem", ".crt")


def load_csr(node: str, csr_pem: str) -> x509.CertificateSigningRequest:
    """``csr_pem`` as a CSR whose self-signature verifies.

    Raises:
        Rejected: not a PEM CSR, or its signature does not verify.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        valid = csr.is_signature_valid
    except ValueError as exc:
        raise Rejected(
            f"the CA refuses the CSR of {node}: not a PEM certificate request ({exc})", system=_SYSTEM
        ) from exc
    if not valid:
        raise Rejected(f"the CA refuses the CSR of {node}: its signature does not verify", system=_SYSTEM)
    return csr


def certificate_for(csr: x509.CertificateSigningRequest, pem: str) -> bool:
    """Whether a certificate of the PEM text ``pem`` carries the CSR's public key."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return False
    wanted = csr.public_key()
    return any(c.public_key() == wanted for c in certs)  # the keys' own comparison, as the checks before installing


def read_certificate_file(path: Path) -> str:
    """The certificate file ``path`` as PEM text: PEM as it is, a DER certificate (a ``.crt`` from
    some CAs) converted; anything else as text, for the checks before installing to refuse."""
    data = path.read_bytes()
    if b"-----BEGIN" not in data:
        try:
            return x509.load_der_x509_certificate(data).public_bytes(Encoding.PEM).decode()
        except ValueError:
            pass
    return data.decode(errors="replace")


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file, fsync it and rename it over ``path``: a crash leaves
    the old file or the new one, never half of one (the CA operator may be reading it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ManualCA:
    # A person signs the CSR, whenever they get to it: not worth polling.
    answers_by_itself = False

    def __init__(self, deployment: Deployment, base: Path | None = None) -> None:
        pki = deployment.pki
        base = base or (Path(deployment.source).parent if deployment.source else Path.cwd())
        self._inbox = base / (pki.inbox or "pki/inbox")
        self._outbox = self._inbox.parent / "outbox"
        self._chain = base / pki.ca_chain if pki.ca_chain else None
        self._deployment = deployment

    def _name(self, node: str) -> str:
        """The file name (without suffix) of ``node``'s CSR and certificate: its subject name (a name
        the deployment does not declare, as in the contract's tests, names its own files)."""
        try:
            spec = self._deployment.node(node)
        except KeyError:
            return node
        return self._deployment.subject_name(spec)

    def _csr_path(self, node: str) -> Path:
        return self._outbox / f"{self._name(node)}.csr"

    def _signed_path(self, node: str) -> Path | None:
        """``<inbox>/<subject-name>.pem``, else ``.crt``: the first that exists."""
        for suffix in _SIGNED_SUFFIXES:
            path = self._inbox / f"{self._name(node)}{suffix}"
            if path.is_file():
                return path
        return None

    async def submit(self, node: str, csr_pem: str) -> None:
        """Put the CSR in the outbox for the CA operator; the same CSR again changes nothing.

        Raises:
            Rejected: not a CSR, or its signature does not verify.
        """
        load_csr(node, csr_pem)
        path = self._csr_path(node)
        if not path.exists() or path.read_text() != csr_pem:
            write_atomically(path, csr_pem)

    async def collect(self, node: str) -> str | None:
        """``<inbox>/<subject-name>.pem`` (or ``.crt``) as PEM, unless it is the stale answer to an
        earlier CSR (then ``None``)."""
        path = self._signed_path(node)
        if path is None:
            return None
        pem = read_certificate_file(path)
        submitted = self._csr_path(node)
        if not submitted.is_file() or certificate_for(load_csr(node, submitted.read_text()), pem):
            return pem
        if path.stat().st_mtime_ns > submitted.stat().st_mtime_ns:
            # Dropped after the CSR was written: the answer to it, and a wrong one. Returned, so
            # that the checks before installing refuse it saying why instead of waiting silently.
            return pem
        return None  # the certificate of an earlier CSR: stale

    async def withdraw(self, node: str) -> None:
        """Before a renewal: the node's certificate in the inbox becomes ``<name>.superseded`` (kept for the
        record, no longer an answer) and its CSR leaves the outbox. Idempotent."""
        while (path := self._signed_path(node)) is not None:
            os.replace(path, path.with_name(f"{path.name}.superseded"))
        self._csr_path(node).unlink(missing_ok=True)

    async def chain(self) -> list[str]:
        """``pki.ca_chain``, one PEM block per certificate, the self-signed root(s) last.

        Raises:
            Rejected: the file is missing or holds no PEM certificate.
        """
        if self._chain is None or not self._chain.is_file():
            raise Rejected(f"pki.ca_chain: file {self._chain} does not exist; put the CA chain (PEM) there")
        try:
            certs = x509.load_pem_x509_certificates(self._chain.read_bytes())
        except ValueError as exc:
            raise Rejected(f"pki.ca_chain: {self._chain} holds no PEM certificate ({exc})", system=_SYSTEM) from exc
        # Intermediates first, as the contract says (a site's file may list the root first).
        certs.sort(key=lambda c: c.subject == c.issuer)
        return [c.public_bytes(Encoding.PEM).decode() for c in certs]

    async def aclose(self) -> None:
        return None
