"""Exports: JSON lines and CSV, filters, and verify_export against edited files."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from journal_helpers import spec_hash

from journal import Journal, Signer, VerifyReport, VerifyStatus, verify_export

FORMATS = ["jsonl", "csv"]
SIGNER = Signer.generate()  # the deployment's key; the tests trust its public key
PUBLIC = SIGNER.public_key_pem()


def _export(j: Journal, path: Path, fmt: str, **filters: object) -> int:
    with open(path, "w", encoding="utf-8", newline="") as out:
        return j.export(out, fmt=fmt, signer=SIGNER, **filters)  # type: ignore[arg-type]


def _verify(path: Path) -> VerifyReport:
    return verify_export(path, public_key=PUBLIC)


def _lines(path: Path) -> tuple[list[str], list[str], str]:
    """(header lines, event lines, seal line) of an export without embedded newlines."""
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    head = lines[:1] if lines[0].startswith("seq,") else []
    return head, lines[len(head) : -1], lines[-1]


def _write(path: Path, head: list[str], events: list[str], seal: list[str]) -> None:
    path.write_text("\n".join(head + events + seal) + "\n", encoding="utf-8")


def _forged_line(fmt: str, last_line: str) -> str:
    """A new event after the last one, with a correct hash, in the export's format."""
    if fmt == "jsonl":
        last = json.loads(last_line)
    else:
        cells = next(csv.reader([last_line]))
        last = {"seq": int(cells[0]), "hash": cells[12]}
    event = {
        "seq": last["seq"] + 1,
        "at": "2030-01-01T00:00:00.000000Z",
        "node": None,
        "kind": "run_note",
        "step": None,
        "attempt": 0,
        "key": None,
        "from_state": None,
        "to_state": None,
        "actor": "mallory",
        "payload": {},
        "sets": {},
    }
    event["prev_hash"] = last["hash"]
    event["hash"] = spec_hash(last["hash"], event)
    if fmt == "jsonl":
        return json.dumps(event)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(
        [
            "" if event[c] is None else (json.dumps(event[c]) if c in ("payload", "sets") else event[c])
            for c in (
                "seq",
                "at",
                "node",
                "kind",
                "step",
                "attempt",
                "key",
                "from_state",
                "to_state",
                "actor",
                "payload",
                "prev_hash",
                "hash",
                "sets",
            )
        ]
    )
    return buffer.getvalue()


def _refresh_seal(fmt: str, seal_line: str, events: list[str]) -> str:
    """Recompute count, range and digest, as someone without the private key can: only the signature is wrong."""
    import hashlib

    if fmt == "jsonl":
        rows = [json.loads(line) for line in events]
        seqs, hashes = [r["seq"] for r in rows], [r["hash"] for r in rows]
        seal = json.loads(seal_line)
    else:
        cells = [next(csv.reader([line])) for line in events]
        seqs, hashes = [int(c[0]) for c in cells], [c[12] for c in cells]
        seal = json.loads(next(csv.reader([seal_line]))[10])
    seal.update(
        count=len(rows if fmt == "jsonl" else cells),
        first_seq=seqs[0],
        last_seq=seqs[-1],
        digest=hashlib.sha256("".join(hashes).encode()).hexdigest(),
    )
    if fmt == "jsonl":
        return json.dumps(seal)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(
        ["", "", "", "export_seal", "", "", "", "", "", "", json.dumps(seal), "", "", ""]
    )
    return buffer.getvalue()


Edit = Callable[[str, list[str], str], tuple[list[str], list[str]]]

EDITS: list[tuple[str, Edit, str]] = [
    # change one row's content
    (
        "edit a row",
        lambda f, ev, s: (ev[:4] + [ev[4].replace("bios_locked", "certified")] + ev[5:], [s]),
        "content does not match its hash",
    ),
    # delete a middle row
    ("delete a row", lambda f, ev, s: (ev[:4] + ev[5:], [s]), "says 9 events but the file holds 8"),
    # swap two rows
    ("reorder rows", lambda f, ev, s: (ev[:4] + [ev[5], ev[4]] + ev[6:], [s]), "rows were reordered"),
    # a row copied again
    ("duplicate a row", lambda f, ev, s: (ev + [ev[-1]], [s]), "says 9 events but the file holds 10"),
    # a forged row with a correct chain hash, before the seal
    (
        "append a forged row",
        lambda f, ev, s: (ev + [_forged_line(f, ev[-1])], [s]),
        "digest of the rows' hashes does not match",
    ),
    # a row after the seal
    ("append after the seal", lambda f, ev, s: (ev, [s, ev[-1]]), "a row after the export seal"),
    # the seal line removed
    ("delete the seal", lambda f, ev, s: (ev, []), "export seal: missing"),
    # a row deleted at the end and the seal recomputed without the key
    (
        "truncate and reseal",
        lambda f, ev, s: (ev[:-1], [_refresh_seal(f, s, ev[:-1])]),
        "the signature does not match the trusted public key",
    ),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("edit", "expected"), [(e, x) for _, e, x in EDITS], ids=[n for n, _, _ in EDITS])
def test_verify_export_catches_edits(
    busy_journal: Journal, tmp_path: Path, fmt: str, edit: Edit, expected: str
) -> None:
    """Each edit of an export file is reported."""
    path = tmp_path / f"export.{fmt}"
    assert _export(busy_journal, path, fmt) == 9
    assert _verify(path).verified
    head, events, seal = _lines(path)
    new_events, new_seal = edit(fmt, events, seal)
    _write(path, head, new_events, new_seal)
    report = _verify(path)
    assert report.status == VerifyStatus.FAILED
    assert not report.ok
    assert any(expected in p for p in report.problems), report.problems


@pytest.mark.parametrize("fmt", FORMATS)
def test_untouched_export_verifies(busy_journal: Journal, tmp_path: Path, fmt: str) -> None:
    """An untouched export is VERIFIED: its signature holds against the trusted public key."""
    path = tmp_path / f"export.{fmt}"
    _export(busy_journal, path, fmt)
    report = _verify(path)
    assert (report.ok, report.problems, report.events, report.sealed) == (True, [], 9, True)
    assert report.status == VerifyStatus.VERIFIED


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_rows_match_events(busy_journal: Journal, tmp_path: Path, fmt: str) -> None:
    """Exported rows carry every column of every event, and a final export_seal record."""
    path = tmp_path / f"export.{fmt}"
    _export(busy_journal, path, fmt)
    text = path.read_text(encoding="utf-8")
    if fmt == "jsonl":
        records = [json.loads(line) for line in text.splitlines()]
        rows, seal = records[:-1], records[-1]
    else:
        table = list(csv.DictReader(io.StringIO(text)))
        rows = [
            {
                k: (
                    None
                    if v == ""
                    else int(v)
                    if k in ("seq", "attempt")
                    else json.loads(v)
                    if k in ("payload", "sets")
                    else v
                )
                for k, v in r.items()
            }
            for r in table[:-1]
        ]
        seal = {"kind": table[-1]["kind"], **json.loads(table[-1]["payload"])}
    assert rows == [e.as_dict() for e in busy_journal.events()]
    assert seal["kind"] == "export_seal"
    assert (seal["count"], seal["first_seq"], seal["last_seq"]) == (9, 1, 9)
    assert seal["filter"] == {"node": None, "since": None}
    assert set(seal) >= {"digest", "signature", "key_id", "exported_at", "deployment"}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("filters", "seqs"),
    [
        ({"node": "conf-1"}, [2, 7, 8]),  # one node's events
        ({"node": "mgr"}, [1, 4, 5, 6]),  # another node
        ({"node": "nobody"}, []),  # a node without events
        ({"since": "SEVENTH"}, [7, 8, 9]),  # at or after the 7th event's time
        ({"node": "mgr", "since": "SEVENTH"}, []),  # both filters
    ],
)
def test_filtered_exports_verify(
    busy_journal: Journal, tmp_path: Path, fmt: str, filters: dict[str, str], seqs: list[int]
) -> None:
    """--node and --since select the right events, and the filtered export verifies."""
    seventh = next(e for e in busy_journal.events() if e.seq == 7).at
    filters = {k: (seventh if v == "SEVENTH" else v) for k, v in filters.items()}
    path = tmp_path / f"export.{fmt}"
    assert _export(busy_journal, path, fmt, **filters) == len(seqs)
    report = _verify(path)
    assert report.verified and report.sealed is True and report.events == len(seqs), report.problems
    _, events, seal = _lines(path)
    got = [json.loads(line)["seq"] if fmt == "jsonl" else int(line.split(",")[0]) for line in events]
    assert got == seqs


@pytest.mark.parametrize("fmt", FORMATS)
def test_filtered_export_catches_deletion(busy_journal: Journal, tmp_path: Path, fmt: str) -> None:
    """Deleting a row of a node-filtered export is caught by count and digest."""
    path = tmp_path / f"export.{fmt}"
    _export(busy_journal, path, fmt, node="mgr")
    head, events, seal = _lines(path)
    _write(path, head, events[:1] + events[2:], [seal])
    report = _verify(path)
    assert not report.ok and any("says 4 events but the file holds 3" in p for p in report.problems)


def test_export_without_a_trusted_key_is_unverified(busy_journal: Journal, tmp_path: Path) -> None:
    """Without a public key rows and digest are checked, and the verdict is UNVERIFIED (never a pass)."""
    path = tmp_path / "export.jsonl"
    _export(busy_journal, path, "jsonl")
    report = verify_export(path)
    assert report.ok and report.sealed is None and report.status == VerifyStatus.UNVERIFIED
    assert report.problems[0].startswith("warning: UNVERIFIED")
    chain = verify_export(path, chain_only=True)
    assert chain.status == VerifyStatus.CHAIN_ONLY and "chain only" in chain.problems[-1]


def test_export_resigned_with_another_key_fails(busy_journal: Journal, tmp_path: Path) -> None:
    """An export edited and re-signed with an attacker's own key fails against the trusted key."""
    path = tmp_path / "export.csv"
    mallory = Signer.generate()
    with open(path, "w", encoding="utf-8", newline="") as out:
        busy_journal.export(out, fmt="csv", signer=mallory)
    report = _verify(path)
    assert not report.ok and report.sealed is False and report.status == VerifyStatus.FAILED
    assert any("does not match the trusted public key" in p for p in report.problems)
    assert verify_export(path, public_key=mallory.public_key_pem()).verified  # only mallory's key says yes


def test_unsigned_export_fails_against_a_trusted_key(busy_journal: Journal, tmp_path: Path) -> None:
    """An export without a signature cannot be proven: with a trusted key it fails."""
    path = tmp_path / "export.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        busy_journal.export(out)
    report = _verify(path)
    assert report.status == VerifyStatus.FAILED and any("not signed" in p for p in report.problems)


def test_export_never_uses_a_key_named_in_the_file(busy_journal: Journal, tmp_path: Path) -> None:
    """A key file beside the journal the export names is never read: the verdict stays UNVERIFIED."""
    path = tmp_path / "export.jsonl"
    _export(busy_journal, path, "jsonl")
    Path(f"{busy_journal.path}.key").write_bytes(b"k" * 32)
    report = verify_export(path, key_path=Path(f"{busy_journal.path}.key"))
    assert report.status == VerifyStatus.UNVERIFIED and report.sealed is None


def test_unknown_format_is_refused(busy_journal: Journal) -> None:
    """An unknown format names the valid ones."""
    with pytest.raises(ValueError, match="jsonl, csv"):
        busy_journal.export(io.StringIO(), fmt="xml")


@pytest.mark.parametrize("fmt", FORMATS)
def test_awkward_text_survives_export(journal: Journal, tmp_path: Path, fmt: str) -> None:
    """Quotes, commas, line and paragraph separators, CR and non-ASCII round-trip and verify."""
    journal.record(
        node="mgr",
        kind="note",
        step='a,"b"\r\nc',
        key="k\u2028\u2029é",
        payload={"text": "line\nnext\u2028\r", "n": 1.25},
    )
    path = tmp_path / f"export.{fmt}"
    _export(journal, path, fmt)
    report = _verify(path)
    assert report.verified, report.problems
