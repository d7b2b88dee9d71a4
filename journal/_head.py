"""The signed head: every commit that appends events also signs the chain's new head.

Checkpoints are signed every N events and at the end of a run; the events after the last
one used to be backed by the unkeyed SHA-256 chain alone, which anyone able to write the
file can extend (a forged ``gate_opened`` with its hash, link, head record and node row
recomputed by hand). So each transaction that appends events also writes, IN THE SAME
SQLite transaction, meta ``head_signature``: an Ed25519 signature with the journal's
signing key over (deployment identity, last seq, head hash, seq of the newest checkpoint).
There is no crash window: the events and the signature of the head they make commit
together or not at all. A checkpoint re-signs the head in its own transaction, so deleting
checkpoints from the database is caught too.

:func:`check` is what verify does with it: the signature must hold against the trusted
public key and name the actual head and deployment; then every event up to the head is
proven. A journal without the row (written before head signatures, or by a writer that
had no key) is reported as such (``head_signed`` None); ``journal verify`` and the acting
commands treat it as a failure (exit 4) until an operator accepts it with ``journal sign-head``
(``orchestrator._head_accept``).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from json.encoder import encode_basestring as _encode_str
from typing import Any

from journal._chain import canonical_json
from journal._prepare import UPSERT_META
from journal._signing import PublicKey, Signer

__all__ = ["HEAD_SIGNATURE", "UPSERT_HEAD_AND_SIGNATURE", "newest_checkpoint", "signed_head", "write", "check"]

HEAD_SIGNATURE = "head_signature"  # the meta row


_NEWEST_CHECKPOINT = "SELECT seq FROM checkpoints ORDER BY id DESC LIMIT 1"


def _js(value: object) -> str:
    # canonical_json of one field, without encoding a dict: this runs at every commit.
    if type(value) is int:
        return str(value)
    if type(value) is str:
        return _encode_str(value)
    return "null" if value is None else canonical_json(value)


def _body(deployment: object, seq: object, head: object, checkpoint: object) -> bytes:
    """canonical_json of the signed fields (sorted keys), assembled by hand (a test pins the equality)."""
    return (
        f'{{"checkpoint":{_js(checkpoint)},"deployment":{_js(deployment)},"head":{_js(head)},"seq":{_js(seq)}}}'
    ).encode()


def newest_checkpoint(conn: sqlite3.Connection) -> int:
    """The seq of the newest checkpoint in the database (0: none)."""
    row = conn.execute(_NEWEST_CHECKPOINT).fetchone()
    return int(row[0]) if row else 0


def signed_head(signer: Signer, deployment: str | None, seq: int, head: str, checkpoint: int) -> str:
    """The meta ``head_signature`` value: the signed fields, the key id and the base64 signature (JSON)."""
    signature = signer.sign(_body(deployment, seq, head, checkpoint))
    return (  # canonical_json of the record, assembled by hand as _body is
        f'{{"checkpoint":{_js(checkpoint)},"deployment":{_js(deployment)},"head":{_js(head)},'
        f'"key_id":{_js(signer.key_id)},"seq":{_js(seq)},"signature":{_js(signature)}}}'
    )


def write(
    conn: sqlite3.Connection, signer: Signer, deployment: str | None, seq: int, head: str, checkpoint: int | None = None
) -> None:
    """Sign the head ``(seq, head)`` inside the caller's write transaction.

    ``checkpoint``: the seq of the newest checkpoint, when the caller knows it (it just inserted it); else read.
    """
    newest = newest_checkpoint(conn) if checkpoint is None else checkpoint
    conn.execute(UPSERT_META, (HEAD_SIGNATURE, signed_head(signer, deployment, seq, head, newest)))


# A commit's two meta rows (the unkeyed head record and its signature) in one statement.
UPSERT_HEAD_AND_SIGNATURE = (
    "INSERT INTO meta (name, value) VALUES ('head', ?), ('head_signature', ?) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)


def check(
    conn: sqlite3.Connection,
    public_key: PublicKey,
    deployment: str | None,
    seq: int,
    head: str,
    *,
    value: str | None,
    newest: int | None = None,
) -> tuple[bool | None, list[str]]:
    """Whether meta ``head_signature`` proves the chain's head ``(seq, head)`` of ``deployment``.

    ``value``: the meta row's value as the caller read it (None: no row); ``newest``: the seq of the newest
    checkpoint when the caller knows it, else it is read here.

    Returns:
        ``(True, [])`` it does; ``(None, [])`` there is none; ``(False, problems)`` it is
        forged, signed with another key, or names another head or deployment (events were
        appended, cut or rewritten without the key).
    """
    from cryptography.exceptions import InvalidSignature

    if value is None:
        return None, []
    try:
        record: Any = json.loads(value)
        if not isinstance(record, dict):
            raise ValueError("not an object")
        signature = base64.b64decode(str(record.get("signature")), validate=True)
        fields = (record.get("deployment"), record.get("seq"), record.get("head"), record.get("checkpoint"))
        body = _body(*fields)
        public_key.verify(signature, body)
    except (InvalidSignature, ValueError, TypeError):
        return False, [
            "meta head_signature: does not verify against the trusted public key (forged, edited, "
            "or signed with another key)"
        ]
    problems = []
    if record.get("seq") != seq or record.get("head") != head:
        problems.append(
            f"meta head_signature: signs head seq {record.get('seq')} ({str(record.get('head'))[:16]}...), the chain's "
            f"head is seq {seq} ({head[:16]}...): events were appended, cut or rewritten without the signing key"
        )
    if newest is None:
        newest = newest_checkpoint(conn)
    if record.get("checkpoint") != newest:
        problems.append(
            f"meta head_signature: was signed when the newest checkpoint was at seq {record.get('checkpoint')}, the "
            f"journal's newest is at seq {newest} (0: none): checkpoints were deleted or added without the signing key"
        )
    if record.get("deployment") != deployment:
        problems.append(
            f"meta head_signature: signed for deployment {record.get('deployment')!r}, the journal says {deployment!r}"
        )
    return (False, problems) if problems else (True, [])
