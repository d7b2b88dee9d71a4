"""Ed25519 signatures of checkpoints: who wrote the chain, provable to an auditor.

A checkpoint says "the chain of deployment D had head hash H at seq N, at time T" (and
the digest of the node rows derived from events 1..N). It is canonical JSON, signed
with the deployment's private key, which the caller resolves from its secret reference
and hands over as PEM bytes. The public key (:func:`public_key_pem`) is what an auditor
is given; verification takes it from the caller, never from the file verified.

    signer = Signer.from_pem(Path(secret_dir, "journal-signing-key.pem").read_bytes())
    journal.checkpoint(signer)
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from config.errors import JournalError
from journal._chain import canonical_json
from journal._files import atomic_write

# cryptography is imported where a key is used, not at import: a command that never signs or
# verifies (``status``) starts without it (issue #11, start-up).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "Signer",
    "PublicKey",
    "load_public_key",
    "public_key_pem",
    "generate_signing_key",
    "key_id",
    "sign_checkpoint",
    "checkpoint_signature_ok",
    "CHECKPOINT_FIELDS",
]

PublicKey: TypeAlias = "Ed25519PublicKey"
KEY_FILE_NAME = "journal-signing-key.pem"
CHECKPOINT_FIELDS = ("seq", "head", "at", "deployment", "nodes", "key_id")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: sha256 of its raw bytes, 16 hex digits."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    """Signs checkpoints with one Ed25519 private key (built from PEM bytes)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_pem(cls, pem: bytes | str, password: bytes | None = None) -> Signer:
        """A signer from a PKCS#8 PEM private key.

        Raises:
            JournalError: not an Ed25519 private key (the message never holds the key).
        """
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        data = pem.encode() if isinstance(pem, str) else bytes(pem)
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            raise JournalError(f"journal signing key: not a readable PEM private key ({type(exc).__name__})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise JournalError(f"journal signing key: an Ed25519 key is needed, got {type(key).__name__}")
        return cls(key)

    @classmethod
    def generate(cls) -> Signer:
        """A signer with a fresh key held in memory only (tests, in-memory journals)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> str:
        """The base64 signature of ``data``."""
        return base64.b64encode(self._key.sign(data)).decode()

    def public_key_pem(self) -> str:
        """This signer's public key as PEM text."""
        return public_key_pem(self.public_key)

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id})"  # never the key


def load_public_key(source: Ed25519PublicKey | Signer | bytes | str | os.PathLike[str]) -> Ed25519PublicKey:
    """A trusted public key from a key object, a signer, PEM bytes/text, or a PEM file path.

    Raises:
        JournalError: not an Ed25519 public key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(source, Ed25519PublicKey):
        return source
    if isinstance(source, Signer):
        return source.public_key
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "-----BEGIN" not in source):
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise JournalError(f"public key {source}: cannot be read ({exc})") from exc
    else:
        data = source.encode() if isinstance(source, str) else bytes(source)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise JournalError(f"public key: not a readable PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise JournalError(f"public key: an Ed25519 key is needed, got {type(key).__name__}")
    return key


def public_key_pem(source: Ed25519PublicKey | Signer | bytes | str) -> str:
    """PEM text of the public key of ``source`` (a signer, a private key PEM, or a public key)."""
    if isinstance(source, (bytes, str)) and b"PRIVATE KEY" in (source.encode() if isinstance(source, str) else source):
        source = Signer.from_pem(source)
    from cryptography.hazmat.primitives import serialization

    key = load_public_key(source)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def generate_signing_key(directory: str | os.PathLike[str], name: str = KEY_FILE_NAME) -> Path:
    """Write a new Ed25519 private key (PKCS#8 PEM, mode 0600) into ``directory``.

    The directory is created 0700 when missing. The key goes to a temporary file that is
    fsynced and renamed: a kill mid-write leaves no key or a whole one, never half.
    An existing key file is kept and its path returned.

    Returns:
        The key file's path.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(directory)
    target = folder / name
    if target.exists():
        return target
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with atomic_write(target) as file:
        file.write(pem)
    return target


def _body(checkpoint: Mapping[str, Any]) -> bytes:
    return canonical_json({name: checkpoint.get(name) for name in CHECKPOINT_FIELDS}).encode()


def sign_checkpoint(signer: Signer, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint record: ``fields`` (without ``key_id``) plus key id and signature."""
    record = {name: fields.get(name) for name in CHECKPOINT_FIELDS}
    record["key_id"] = signer.key_id
    record["signature"] = signer.sign(_body(record))
    return record


# (public key, signed body, signature) triples already verified in this process. A run checks its
# earlier checkpoints again at each new one (an incremental verify reads them all): 165 checkpoints
# of a 1000-node simulation made 13,000 Ed25519 verifications (issue #11). Verifying the same bytes
# again can only give the same answer, so a hit is as good as the check; a changed byte is a miss.
_VERIFIED: set[tuple[bytes, bytes, str]] = set()
_VERIFIED_MAX = 65536


def checkpoint_signature_ok(public_key: Ed25519PublicKey, checkpoint: Mapping[str, Any]) -> bool:
    """Whether ``checkpoint`` was signed by the private key of ``public_key``."""
    from cryptography.exceptions import InvalidSignature

    body, text = _body(checkpoint), str(checkpoint.get("signature"))
    seen = (public_key.public_bytes_raw(), body, text)
    if seen in _VERIFIED:
        return True
    try:
        signature = base64.b64decode(text, validate=True)
        public_key.verify(signature, body)
    except (InvalidSignature, ValueError, TypeError):
        return False
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED.add(seen)
    return True
