"""The Conferencing Nodes' bootstrap files, encrypted at rest, outside the journal.

The worker_vm POST answer is a Conferencing Node's only bootstrap configuration: no endpoint
returns it again, and it carries password hashes (``pexip-api.md`` 7.2). It is kept verbatim
(bytes), AES-GCM encrypted with ``pexip_api.bootstrap_key`` (a secret reference to 32 random
bytes, base64 or hex), one file per node in a private 0700 directory beside the journal's file,
until the node has been provisioned with it. The journal records only the file's SHA-256.

Why in ``adapters/``: the store is a side effect that the steps observe (is there a file for
this node?) and change (store, delete), like an outside system, and it knows nothing of the
journal or the lifecycle; the wiring hands it its place beside the journal. Each file is bound
to its deployment and node (the AES-GCM associated data), so a file copied to another node's
name does not decrypt, and to the worker_vm whose POST answered it (its URI, in the clear header
and the associated data): a file left by another worker_vm of the node (an earlier deployment
beside a new journal, a worker_vm deleted and posted again by a run killed before it stored the
new answer) is not this worker_vm's file and reads as lost, so the step posts the worker_vm again
instead of uploading a file the node would never sync with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from config.errors import Rejected
from config.secrets import Secret

if TYPE_CHECKING:
    import asyncio  # imported where used: status starts without it (#11)

__all__ = ["BootstrapStore", "bootstrap_dir", "decode_key", "new_key_text"]

_MAGIC = b"PXB1"  # format 1 (unbound to a worker_vm): magic, 12-byte nonce, ciphertext with its 16-byte tag
_MAGIC2 = b"PXB2"  # format 2: magic, 2-byte length and the worker_vm's URI (UTF-8), nonce, ciphertext
_NONCE = 12
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_FIX = 'set pexip_api.bootstrap_key = "env:NAME" or "file:PATH" holding 32 random bytes (base64 or 64 hex digits)'


def bootstrap_dir(journal: Path) -> Path:
    """The private directory of the bootstrap files of the journal at ``journal``."""
    return journal.parent / f"{journal.name}.bootstrap"


def new_key_text() -> str:
    """A new random key as the store reads it: 32 bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def decode_key(text: str) -> bytes:
    """The 32 key bytes of ``text`` (64 hex digits, or base64 with or without padding).

    Raises:
        ValueError: ``text`` is not 32 bytes in either form (the message never shows it).
    """
    text = text.strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    try:
        standard = text.replace("-", "+").replace("_", "/").rstrip("=")
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64 or hex") from None
    if len(key) != 32:
        raise ValueError(f"{len(key)} bytes, not 32")
    return key


class BootstrapStore:
    """One encrypted bootstrap file per Conferencing Node, in ``directory`` (0700; files 0600).

    The key is read on first use, so commands that never touch a bootstrap file need none.
    """

    def __init__(self, directory: Path, key: Secret | None, deployment: str):
        self.directory = Path(directory)
        self._key_ref = key
        self._deployment = deployment
        self._aead: AESGCM | None = None
        # Renames made / covered by a finished directory fsync (aput's group sync), and the sync's lock.
        self._renamed = 0
        self._dir_synced = 0
        self._dir_lock: asyncio.Lock | None = None

    def path(self, node: str) -> Path:
        if not _NODE_NAME.fullmatch(node):
            raise ValueError(f"node name {node!r} cannot name a bootstrap file")
        return self.directory / f"{node}.bootstrap"

    def get(self, node: str, worker: str | None = None) -> bytes | None:
        """The node's bootstrap file, decrypted; ``None`` when there is none (it was lost), or when
        ``worker`` (a worker_vm's URI) is given and the file was answered to another worker_vm.
        A format-1 file (written before files named their worker_vm) is taken for any.

        Raises:
            Rejected: the file does not decrypt with the configured key (another key, or altered).
        """
        path = self.path(node)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        aead = self._cipher()
        try:
            if data.startswith(_MAGIC2) and len(data) >= len(_MAGIC2) + 2:
                size = int.from_bytes(data[4:6], "big")
                own, rest = data[6 : 6 + size], data[6 + size :]
                if worker is not None and own != worker.rstrip("/").encode():
                    return None  # another worker_vm's answer: not this one's file
                associated = self._associated(node) + b"/" + own
            elif data.startswith(_MAGIC):
                rest, associated = data[len(_MAGIC) :], self._associated(node)
            else:
                raise InvalidTag
            return aead.decrypt(rest[:_NONCE], rest[_NONCE:], associated)
        except InvalidTag:
            raise Rejected(
                f"bootstrap file {path} of {node} does not decrypt with pexip_api.bootstrap_key "
                f"({self._key_ref.ref if self._key_ref else 'not set'}): "
                "the key changed or the file was altered; restore the key, or delete the file so that the "
                "worker_vm is created again"
            ) from None

    def sha256(self, node: str, worker: str | None = None) -> str | None:
        """SHA-256 (hex) of the node's bootstrap file, ``None`` when there is none (see :meth:`get`)."""
        body = self.get(node, worker)
        return None if body is None else hashlib.sha256(body).hexdigest()

    def put(self, node: str, body: bytes, worker: str | None = None) -> str:
        """Store ``body`` for ``node`` (replacing any earlier one), durably; return its SHA-256.
        ``worker``: the URI of the worker_vm whose POST answered it (format 2, bound to it)."""
        digest = self._write_file(node, body, worker)
        _fsync_directory(self.directory)  # the rename survives a power loss before the step commits
        return digest

    async def aput(self, node: str, body: bytes, worker: str | None = None) -> str:
        """:meth:`put` off the event loop, as durably: the file written and fsynced in a thread, then one
        directory fsync shared by every rename made before it started (issue #11: two fsyncs per node
        blocked the loop of a 1000-node run). Returns once the rename is durable."""
        import asyncio

        digest = await asyncio.to_thread(self._write_file, node, body, worker)
        self._renamed += 1  # counted on the loop, after the rename: a sync that reads it starts after the rename
        renamed = self._renamed
        if self._dir_lock is None:
            self._dir_lock = asyncio.Lock()
        async with self._dir_lock:
            if self._dir_synced < renamed:  # else a sync that started after this rename covered it
                target = self._renamed
                await asyncio.to_thread(_fsync_directory, self.directory)
                self._dir_synced = max(self._dir_synced, target)
        return digest

    def _write_file(self, node: str, body: bytes, worker: str | None = None) -> str:
        """Write, fsync and rename ``node``'s file into place (the directory not yet fsynced)."""
        aead = self._cipher()
        self._ensure_directory()
        path = self.path(node)
        nonce = secrets.token_bytes(_NONCE)
        if worker is None:
            data = _MAGIC + nonce + aead.encrypt(nonce, bytes(body), self._associated(node))
        else:
            own = worker.rstrip("/").encode()  # a Location path and a resource_uri may differ by the slash
            sealed = aead.encrypt(nonce, bytes(body), self._associated(node) + b"/" + own)
            data = _MAGIC2 + len(own).to_bytes(2, "big") + own + nonce + sealed
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return hashlib.sha256(body).hexdigest()

    def delete(self, node: str) -> None:
        self.path(node).unlink(missing_ok=True)

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)  # an existing directory (or a umask) may have left it wider

    def _associated(self, node: str) -> bytes:
        return f"pexip-bootstrap/v1/{self._deployment}/{node}".encode()

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            if self._key_ref is None:
                raise Rejected(
                    f"pexip_api.bootstrap_key is not set: the Conferencing Nodes' bootstrap files are "
                    f"kept encrypted with it; {_FIX}"
                )
            try:
                key = decode_key(self._key_ref.reveal())
            except ValueError as exc:
                raise Rejected(f"pexip_api.bootstrap_key ({self._key_ref.ref}) is unusable ({exc}); {_FIX}") from None
            self._aead = AESGCM(key)
        return self._aead


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
