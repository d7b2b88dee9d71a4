"""Exports of the journal (JSON lines or CSV) that carry their own proof.

Each exported event keeps its ``prev_hash`` and ``hash``, so its content can be checked
on its own. A last record, the export seal, holds the count, the seq range, a digest
(sha256 over the exported hashes, in order) and, when the exporter was given the
deployment's signer, an Ed25519 signature of the seal: a row edited, deleted, reordered
or added in the file is found by :func:`verify_export`, and a recomputed digest is found
against the public key the verifier trusts (never a key or path named in the file).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from journal._chain import ChainChecker, canonical_json, digest_of
from journal._records import EVENT_COLUMNS, Event, VerifyReport, VerifyStatus
from journal._signing import PublicKey, Signer, load_public_key
from journal._time import utc_now
from journal.kinds import EXPORT_SEAL as SEAL_KIND

__all__ = ["FORMATS", "write_export", "verify_export"]

FORMATS = ("jsonl", "csv")
_SEAL_FIELDS = (
    "count",
    "first_seq",
    "last_seq",
    "digest",
    "filter",
    "exported_at",
    "journal",
    "deployment",
    "key_id",
    "signature",
)


def _seal_body(seal: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in seal.items() if k not in ("signature", "kind")}).encode()


def write_export(
    events: Iterable[Event],
    out: TextIO,
    *,
    fmt: str,
    filter_: dict[str, Any],
    signer: Signer | None,
    journal: str,
    deployment: str | None = None,
) -> int:
    """Write ``events`` then the export seal to ``out``; returns the events written."""
    if fmt not in FORMATS:
        raise ValueError(f"export: format {fmt!r} is not one of {', '.join(FORMATS)}")
    digest = hashlib.sha256()
    count, first_seq, last_seq = 0, None, None
    writer = None
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EVENT_COLUMNS)
    for event in events:
        if writer is None:
            out.write(canonical_json(event.as_dict()) + "\n")
        else:
            writer.writerow(_csv_cells(event))
        digest.update(event.hash.encode())
        count += 1
        first_seq = event.seq if first_seq is None else first_seq
        last_seq = event.seq
    hexdigest = digest.hexdigest()
    seal: dict[str, Any] = {
        "count": count,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "digest": hexdigest,
        "filter": filter_,
        "exported_at": utc_now(),
        "journal": journal,
        "deployment": deployment,
        "key_id": signer.key_id if signer is not None else None,
    }
    seal["signature"] = signer.sign(_seal_body(seal)) if signer is not None else None
    if writer is None:
        out.write(canonical_json({"kind": SEAL_KIND, **seal}) + "\n")
    else:
        cells = [""] * len(EVENT_COLUMNS)
        cells[EVENT_COLUMNS.index("kind")] = SEAL_KIND
        cells[EVENT_COLUMNS.index("payload")] = canonical_json(seal)
        writer.writerow(cells)
    return count


def _csv_cells(event: Event) -> list[Any]:
    # None is written as an empty cell; the journal never stores "" in a nullable column
    # (commit turns it into NULL), so the two cannot be confused on the way back.
    cells: list[Any] = []
    for name in EVENT_COLUMNS:
        value = getattr(event, name)
        if name in ("payload", "sets"):
            value = canonical_json(value)
        cells.append("" if value is None else value)
    return cells


class _ParsedExport:
    def __init__(self) -> None:
        self.rows: list[tuple[str, list[Any]]] = []  # (where, row in EVENT_COLUMNS order)
        self.seal: dict[str, Any] | None = None
        self.problems: list[str] = []


def _parse_jsonl(text: str) -> _ParsedExport:
    parsed = _ParsedExport()
    # split("\n"), not splitlines(): JSON text may hold U+2028 and friends unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            parsed.problems.append(f"{where}: not JSON ({exc})")
            continue
        if not isinstance(record, dict):
            parsed.problems.append(f"{where}: not a JSON object")
            continue
        _take(parsed, where, record)
    return parsed


def _parse_csv(text: str) -> _ParsedExport:
    parsed = _ParsedExport()
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(header) != EVENT_COLUMNS:
        parsed.problems.append(f"line 1: header is not {','.join(EVENT_COLUMNS)}")
        return parsed
    for cells in reader:
        where = f"line {reader.line_num}"
        if len(cells) != len(EVENT_COLUMNS):
            parsed.problems.append(f"{where}: {len(cells)} cells, expected {len(EVENT_COLUMNS)}")
            continue
        record: dict[str, Any] = {n: (c if c != "" else None) for n, c in zip(EVENT_COLUMNS, cells, strict=True)}
        try:
            for name in ("seq", "attempt"):
                if record[name] is not None:
                    record[name] = int(record[name])
            for name in ("payload", "sets"):
                record[name] = json.loads(record[name]) if record[name] is not None else None
        except ValueError as exc:
            parsed.problems.append(f"{where}: unreadable cell ({exc})")
            continue
        if record["kind"] == SEAL_KIND and record["hash"] is None and isinstance(record["payload"], dict):
            record = {"kind": SEAL_KIND, **record["payload"]}
        _take(parsed, where, record)
    return parsed


def _take(parsed: _ParsedExport, where: str, record: dict[str, Any]) -> None:
    if parsed.seal is not None:
        parsed.problems.append(f"{where}: a row after the export seal (appended to the file)")
        return
    if record.get("kind") == SEAL_KIND and record.get("hash") is None:  # an event has a hash
        parsed.seal = record
        return
    missing = [name for name in EVENT_COLUMNS if name not in record]
    if missing:
        parsed.problems.append(f"{where}: missing fields {', '.join(missing)}")
        return
    parsed.rows.append((where, [record[name] for name in EVENT_COLUMNS]))


def _signature_ok(public_key: PublicKey, seal: dict[str, Any]) -> bool:
    from cryptography.exceptions import InvalidSignature  # here: reading a journal (`status`) starts without it

    try:
        public_key.verify(base64.b64decode(str(seal.get("signature")), validate=True), _seal_body(seal))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify_export(
    path: str | Path,
    key_path: str | Path | None = None,
    *,
    public_key: PublicKey | Signer | bytes | str | os.PathLike[str] | None = None,
    chain_only: bool = False,
) -> VerifyReport:
    """Check an export file (JSON lines or CSV, told apart by its content).

    Recomputes each row's hash, checks order and the prev links wherever rows are
    neighbours in the chain (all of them in an unfiltered export), the export seal's
    count, range and digest, and its signature against ``public_key``.

    Args:
        path: the export file.
        key_path: ignored (the old HMAC key file); kept so old callers still run. Nothing
            named in the export itself is ever used to check it.
        public_key: the trusted Ed25519 public key. Without it the status is
            ``UNVERIFIED``; with it, an unsigned or wrongly signed export is ``FAILED``.
        chain_only: check rows and digest only, status ``CHAIN_ONLY``.

    Returns:
        A :class:`VerifyReport`.
    """
    del key_path
    key = load_public_key(public_key) if public_key is not None and not chain_only else None
    # newline="": a CSV cell may hold a bare \r that universal newlines would rewrite.
    with open(path, encoding="utf-8", newline="") as file:
        text = file.read()
    parsed = _parse_jsonl(text) if text.lstrip().startswith("{") else _parse_csv(text)
    problems = list(parsed.problems)
    seal = parsed.seal
    filter_ = seal.get("filter") if seal else None
    unfiltered = isinstance(filter_, dict) and not any(filter_.values())
    chain = ChainChecker(contiguous=unfiltered)
    for where, row in parsed.rows:
        chain.feed(row, where=f"{where} (seq {row[0]})")
    problems += chain.finish()
    hashes = [str(row[12]) for _, row in parsed.rows]
    sealed: bool | None = None
    if seal is None:
        problems.append("export seal: missing (the file was cut short or its last line deleted)")
        sealed = False
    else:
        problems += _seal_problems(seal, parsed.rows, hashes)
        if key is not None:
            sealed = seal.get("signature") is not None and _signature_ok(key, seal)
            if not sealed:
                problems.append(
                    "export seal: "
                    + (
                        "not signed"
                        if seal.get("signature") is None
                        else "the signature does not match the trusted public key"
                    )
                    + "; the file cannot be proven to come from this deployment's journal"
                )
    ok = not problems
    if chain_only:
        status = VerifyStatus.CHAIN_ONLY if ok else VerifyStatus.FAILED
        problems.append("warning: chain only: the seal's signature was not checked")
    elif not ok:
        status = VerifyStatus.FAILED
    elif key is None:
        status = VerifyStatus.UNVERIFIED
        problems.append(
            "warning: UNVERIFIED: no trusted public key was given; rows and digest were checked, "
            "the signature was not (anyone could have written this file)"
        )
    else:
        status = VerifyStatus.VERIFIED
    return VerifyReport(ok=ok, problems=problems, events=len(parsed.rows), sealed=sealed, status=status)


def _seal_problems(seal: dict[str, Any], rows: list[tuple[str, list[Any]]], hashes: list[str]) -> list[str]:
    problems = []
    missing = [name for name in _SEAL_FIELDS if name not in seal]
    if "deployment" in missing and "mac" in seal:
        missing = ["(an export of the old HMAC-sealed format: re-export it)"]
    if missing:
        problems.append(f"export seal: missing fields {', '.join(missing)}")
    if seal.get("count") != len(rows):
        problems.append(
            f"export seal: says {seal.get('count')} events but the file holds {len(rows)} (rows were deleted or added)"
        )
    first = rows[0][1][0] if rows else None
    last = rows[-1][1][0] if rows else None
    if seal.get("first_seq") != first or seal.get("last_seq") != last:
        problems.append(
            f"export seal: covers seq {seal.get('first_seq')}..{seal.get('last_seq')} but the rows run {first}..{last}"
        )
    if seal.get("digest") != digest_of(hashes):
        problems.append("export seal: the digest of the rows' hashes does not match (rows changed)")
    return problems
