"""A scripted certificate authority: a configured program signs each CSR (``[pki] mode = "command"``).

For sites whose CA can be driven from a command line (``openssl ca``, a vendor's CLI, a
script). ``pki.command`` is an argv list, run without a shell: the CSR (PEM) goes to its
standard input, the signed certificate (PEM; other text around it is ignored) comes back on
its standard output. ``ORCHESTRATOR_NODE`` in its environment names the node,
``ORCHESTRATOR_SUBJECT`` its subject name.

The same folders as the manual CA keep the state, so a crash between signing and installing
never signs twice: the CSR in ``<inbox>/../outbox/<subject-name>.csr``, the certificate in
``<inbox>/<subject-name>.pem`` (the subject name: the node's FQDN, or its IP address). A
submission whose certificate is already there runs nothing.

The program runs once at a time, in this process and across processes (a lock file in the
outbox): a CA's database is not made for concurrent writers (two `openssl ca` at once issue the
same serial number and lose one index entry), and Conferencing Nodes are certified in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from cryptography import x509

from adapters.ca_manual import ManualCA, certificate_for, load_csr, write_atomically
from config.errors import Rejected, Timeout
from config.model import Deployment

__all__ = ["CommandCA"]

_SYSTEM = "ca"
_STDERR_SHOWN = 2000  # characters of the program's stderr kept in an error
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\s*", re.S)


class CommandCA(ManualCA):
    """A :class:`~adapters.base.CertificateAuthority` that runs ``pki.command`` for each new CSR."""

    # The program answers at once: worth asking while a node waits.
    answers_by_itself = True

    def __init__(self, deployment: Deployment, base: Path | None = None) -> None:
        super().__init__(deployment, base)
        pki = deployment.pki
        if not pki.command:
            raise RuntimeError('CommandCA needs pki.command (config validation requires it for mode = "command")')
        self._argv = list(pki.command)
        self._timeout = pki.command_timeout_s
        self._cwd = base or (Path(deployment.source).parent if deployment.source else Path.cwd())
        self._lock = asyncio.Lock()

    async def submit(self, node: str, csr_pem: str) -> None:
        """Have the program sign ``node``'s CSR, unless its certificate is already in the inbox.

        Raises:
            Rejected: not a CSR; the program failed (its exit status and stderr), or printed
                no certificate for the CSR's key.
            Timeout: the program did not finish within ``pki.command_timeout_s`` (retryable).
        """
        csr = load_csr(node, csr_pem)
        await super().submit(node, csr_pem)
        signed = self._inbox / f"{self._name(node)}.pem"
        async with self._one_at_a_time():
            if signed.is_file() and certificate_for(csr, signed.read_text()):
                return  # signed before (a replay, or a resumed run): never sign twice
            out = await self._run(node, csr_pem)
            self._keep(node, csr, out, signed)

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self) -> AsyncIterator[None]:
        async with self._lock:
            self._outbox.mkdir(parents=True, exist_ok=True)
            with open(self._outbox / ".command.lock", "a") as lock:
                # Another orchestrator process may hold it while its program runs. Polled, not a
                # blocking flock in a thread: a cancelled wait then leaves nothing behind.
                while True:
                    try:
                        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(0.05)
                try:
                    yield
                finally:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _keep(self, node: str, csr: x509.CertificateSigningRequest, out: str, signed: Path) -> None:
        """The program's certificate for the CSR, into the inbox. Raises Rejected when there is none."""
        blocks = [m.group(0).strip() + "\n" for m in _PEM_CERT.finditer(out)]
        if not blocks or not certificate_for(csr, "".join(blocks)):
            raise Rejected(
                f"pki.command ({self._argv[0]}) exited 0 for {node} but printed "
                f"{'no PEM certificate' if not blocks else 'no certificate for the CSR key'} on stdout; "
                "it must write the signed certificate (PEM) to standard output",
                system=_SYSTEM,
            )
        write_atomically(signed, "".join(blocks))

    async def _run(self, node: str, csr_pem: str) -> str:
        program = self._argv[0]
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self._cwd,
                env={**os.environ, "ORCHESTRATOR_NODE": node, "ORCHESTRATOR_SUBJECT": self._name(node)},
            )
        except OSError as exc:
            raise Rejected(
                f"pki.command: cannot start {program} ({exc.strerror or exc}); fix pki.command", system=_SYSTEM
            ) from exc
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(csr_pem.encode()), self._timeout)
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise Timeout(
                f"pki.command ({program}) did not sign the CSR of {node} within {self._timeout:g} s "
                "(pki.command_timeout_s); it was stopped",
                system=_SYSTEM,
            ) from exc
        if process.returncode != 0:
            said = stderr.decode(errors="replace").strip()[-_STDERR_SHOWN:] or "(nothing on stderr)"
            raise Rejected(
                f"pki.command ({program}) refused the CSR of {node}: exit status {process.returncode}: {said}",
                system=_SYSTEM,
            )
        return stdout.decode(errors="replace")
