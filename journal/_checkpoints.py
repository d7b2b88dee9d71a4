"""Signed checkpoints: written by :meth:`Journal.checkpoint`, read back for :meth:`Journal.verify`.

A checkpoint is signed only over a chain that verifies (from the previous checkpoint on,
against the signer's own public key), inside the write lock, so no commit slips in
between the check and the signature. It is recorded in the ``checkpoints`` table (with
the derived node rows, kept for the newest checkpoint only, so the next incremental check
can start from it) and, once that transaction committed, appended, fsynced, to
``<journal>.checkpoints`` as one canonical JSON line: the line a caller also sends to its
remote syslog servers. The transaction may be the caller's (a run's recap: :func:`sign`).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.errors import IntegrityError, JournalError
from journal import _continued, _head
from journal._chain import _encode_str, canonical_json
from journal._derive import text_digest
from journal._files import append_line
from journal._signing import CHECKPOINT_FIELDS, PublicKey, Signer, sign_checkpoint
from journal._time import utc_now
from journal._verify import KeptSnapshot, Verification, integrity_problems, verify_connection

__all__ = [
    "KeptSnapshot",
    "Signed",
    "sign",
    "committed",
    "append",
    "make",
    "missing_lines",
    "recorded",
    "verify",
    "load_kept",
]

_COLUMNS = ("seq", "at", "deployment", "head", "nodes", "key_id", "signature")


@dataclass
class Signed:
    """A checkpoint signed and recorded inside a write transaction that has not committed yet (:func:`sign`)."""

    record: dict[str, Any]
    parts: dict[str, str]
    version: int  # the connection's ``PRAGMA data_version`` inside that transaction
    checked: Verification


def sign(
    conn: sqlite3.Connection,
    path: Path,
    signer: Signer,
    sign_head: bool,
    *,
    file_check: bool = True,
    kept: KeptSnapshot | None = None,
    continued: bool = False,
) -> Signed:
    """Verify, sign and record a checkpoint of the chain's head, inside the caller's write transaction.

    The caller holds the lock in a ``BEGIN IMMEDIATE`` transaction (its own, or a run's recap: issue #11),
    so no commit slips in between the check and the signature. What this writes is a savepoint: when it
    raises, it is undone and the caller's transaction is as it was. Nothing is durable, nor appended to
    the checkpoint list, before the caller's ``COMMIT``; then :func:`committed`. A line must never name a
    checkpoint the database may lose (every later run would be refused); the other way round, a crash
    between the COMMIT and the line, is what the next run mends (``orchestrator._trust``).

    ``sign_head``: the journal signs its head (``Journal.sign_heads``): the head signature is
    renewed in the same transaction, naming this checkpoint as the newest (journal/_head.py).
    ``file_check``: also run SQLite's ``quick_check`` over the whole file first (its cost grows with
    the file; the periodic checkpoints of a run skip it, the closing one and ``journal verify`` keep it).
    ``kept``: this process's last stored snapshot (:class:`KeptSnapshot`), updated by :func:`committed`.
    ``continued``: check only what this connection appended since ``kept`` when no other connection
    committed since (:mod:`journal._continued`; a run's periodic and closing checkpoints), else the incremental
    check; with ``file_check``, the ``quick_check`` runs beside it.
    """
    assert conn.in_transaction  # the caller's BEGIN IMMEDIATE
    try:
        conn.execute("SAVEPOINT journal_checkpoint")
        try:
            version = _continued.data_version(conn)  # in the write transaction: no commit can come between
            checked = None
            damaged: list[str] = []
            if continued and kept is not None:
                checked = _continued.continued(conn, signer.public_key, kept, version)
                if checked is not None and file_check:
                    # The file's pages too (a run's closing checkpoint): the chain is checked the continued way, as
                    # the periodic ones do, not by loading and deriving the stored snapshot again (issue #11: the
                    # closing checkpoint's traced peak ~2 MB at 1000 nodes, the run's peak RSS).
                    damaged = integrity_problems(conn, full=False)
            if checked is None:
                if kept is not None:  # from the first checkpoint on, this connection's own edits of events are noted
                    for sql in _continued.GUARD:
                        conn.execute(sql)
                integrity = "quick" if file_check else "none"
                checked = verify_connection(conn, public_key=signer.public_key, incremental=True, integrity=integrity)
                if kept is not None and checked.report.ok:
                    conn.execute(_continued.FORGET_EDITS)  # the events since the newest checkpoint were hashed again
            if damaged or not checked.report.ok:
                raise IntegrityError(
                    f"journal {path}: refusing to sign a checkpoint over a journal that does not verify:\n  "
                    + "\n  ".join([*damaged, *checked.report.problems])
                )
            seq, head = checked.head
            # The snapshot encoded once: its text is stored and its digest signed (issue #11: twice was 1.9 s
            # of the 162 checkpoints of a 1000-node simulation).
            parts = checked.parts if checked.parts is not None else _encoded_parts(checked, kept)
            snapshot_text = "{" + ",".join(parts[name] for name in sorted(parts)) + "}"
            record = sign_checkpoint(
                signer,
                {
                    "seq": seq,
                    "head": head,
                    "at": utc_now(),
                    "deployment": checked.deployment,
                    "nodes": text_digest(snapshot_text),
                },
            )
            # Only the newest checkpoint keeps its node snapshot: incremental checks start there,
            # and a journal of many checkpoints does not grow by a copy of every row each time.
            conn.execute("UPDATE checkpoints SET snapshot = NULL WHERE snapshot IS NOT NULL")
            conn.execute(
                f"INSERT INTO checkpoints ({', '.join(_COLUMNS)}, snapshot) VALUES ({', '.join('?' * 8)})",
                (*[record[c] for c in _COLUMNS], snapshot_text),
            )
            if sign_head:
                _head.write(conn, signer, checked.deployment, seq, head, checkpoint=seq)  # the newest: this one
            conn.execute("RELEASE journal_checkpoint")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO journal_checkpoint")
                conn.execute("RELEASE journal_checkpoint")
            raise
    except sqlite3.Error as exc:
        if kept is not None:
            kept.digest = None  # whatever is stored now is decoded again
        raise JournalError(f"journal {path}: checkpoint failed ({exc}); nothing was signed") from exc
    except BaseException:
        if kept is not None:
            kept.data_version = None  # the next checkpoint takes the long way
        raise
    return Signed(record, parts, version, checked)


def committed(signed: Signed, kept: KeptSnapshot | None, file: Path | None) -> dict[str, Any]:
    """After the COMMIT of :func:`sign`'s transaction: ``kept`` moves to it, and its line is appended to ``file``.

    Returns:
        The checkpoint record, the line written: send it wherever a copy must be kept (syslog).

    Raises:
        JournalError: the line could not be appended (the checkpoint is in the database: the next run appends it).
    """
    record, checked = signed.record, signed.checked
    if kept is not None:
        kept.digest, kept.parts = record["nodes"], signed.parts
        kept.seq, kept.head = checked.head
        kept.deployment, kept.data_version = checked.deployment, signed.version
        kept.guarded = True  # committed with this checkpoint (a rollback undoes the TEMP triggers too)
    if file is not None:
        append(file, record)
    return record


def append(file: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` to the checkpoint list ``file`` as its canonical JSON line, fsynced."""
    append_line(file, canonical_json(record))


def make(
    conn: sqlite3.Connection,
    path: Path,
    signer: Signer,
    file: Path | None,
    sign_head: bool,
    *,
    file_check: bool = True,
    kept: KeptSnapshot | None = None,
    continued: bool = False,
) -> dict[str, Any]:
    """:func:`sign` in a transaction of its own, committed, then :func:`committed` (the caller holds the lock)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            signed = sign(conn, path, signer, sign_head, file_check=file_check, kept=kept, continued=continued)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        if kept is not None:
            kept.digest = None
        raise JournalError(f"journal {path}: checkpoint failed ({exc}); nothing was signed") from exc
    return committed(signed, kept, file)


def missing_lines(conn: sqlite3.Connection, file: Path) -> list[dict[str, Any]]:
    """The database's checkpoints newer than the newest line of ``file`` (none: the file lacks nothing).

    A process stopped between a checkpoint's COMMIT and its line leaves them (:func:`sign`). Call it only on
    a journal that verified: its checkpoints are then signed by the trusted key and match the chain.
    """
    lines = load_kept(file) if file.is_file() else []
    newest = max((line["seq"] for line in lines if isinstance(line, dict) and type(line.get("seq")) is int), default=-1)
    return recorded(conn, after=newest)


def _encoded_parts(checked: Verification, kept: KeptSnapshot | None) -> dict[str, str]:
    """Each node's ``"name":{row}`` as canonical_json writes it inside the snapshot (sorted keys, so the joined
    parts in name order are canonical_json of the whole): reused from ``kept`` for a node with no event since
    the snapshot the check started from, when that snapshot is the one kept."""
    reuse = kept is not None and kept.digest is not None and checked.start_digest == kept.digest
    old = kept.parts if reuse and kept is not None else {}
    touched = checked.touched
    parts: dict[str, str] = {}
    for name, row in checked.snapshot.items():
        part = old.get(name) if name not in touched else None
        parts[name] = part if part is not None else _encode_str(name) + ":" + canonical_json(row)
    return parts


def recorded(conn: sqlite3.Connection, *, after: int = -1) -> list[dict[str, Any]]:
    """The checkpoints in the database (those of a seq above ``after``), oldest first."""
    rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM checkpoints WHERE seq > ? ORDER BY id", (after,)).fetchall()
    return [{name: row[_COLUMNS.index(name)] for name in (*CHECKPOINT_FIELDS, "signature")} for row in rows]


def verify(
    conn: sqlite3.Connection,
    path: Path,
    public_key: PublicKey | None,
    kept: list[Any] | None,
    *,
    chain_only: bool,
    incremental: bool,
) -> Verification:
    """:func:`verify_connection`, with SQLite errors as :class:`JournalError`."""
    try:
        return verify_connection(
            conn,
            public_key=public_key,
            kept=kept,
            chain_only=chain_only,
            incremental=incremental,
            integrity="quick" if incremental else "full",
        )
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: cannot be read for verify ({exc})") from exc


def load_kept(source: str | os.PathLike[str] | Iterable[Mapping[str, Any]]) -> list[Any]:
    """An independently kept checkpoint list: a JSON-lines file (path) or records.

    A syslog server's copy is read too: RFC 5424 lines with msgid ``checkpoint`` give their
    message, other messages are skipped. Lines that are not JSON objects are kept as they
    are, so verify reports them.
    """
    if not isinstance(source, (str, os.PathLike)):
        return list(source)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JournalError(f"checkpoints file {source}: cannot be read ({exc})") from exc
    kept: list[Any] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        syslog = _SYSLOG_LINE.match(line)
        if syslog is not None:
            if syslog.group(1) != "checkpoint":
                continue  # another message the syslog server received: not ours to judge
            line = syslog.group(2)
        try:
            kept.append(json.loads(line))
        except ValueError:
            kept.append(line)
    return kept


# A line as a syslog server keeps it (RFC 5424, rsyslog's %rawmsg%): `<PRI>1 TIME HOST APP PROCID MSGID SD MSG`.
_SYSLOG_LINE = re.compile(r"^<\d{1,3}>1 \S+ \S+ \S+ \S+ (\S+) (?:-|\[.*?\]) ?(.*)$")
