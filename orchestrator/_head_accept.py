"""A missing or stale head signature: refused by every command that acts, accepted only by an operator with the key.

Every commit signs the head (journal/_head.py), so a journal with events and no head signature
is either older than head signatures or had the row deleted; one whose signature names an
earlier head had events appended by a writer without the signing key (or by an attacker). Both
are refused (exit 4) by ``journal verify`` and the acting commands: a deleted integrity record
is tampering evidence, as a missing digest file is a validation failure for CloudTrail.

``orchestrator journal sign-head --by WHO [--reason TEXT] --yes`` is the way back: it needs the
signing key (without it nothing can be accepted, so an attacker's appended event never becomes
acceptable), shows the events no signature covers, and with ``--yes`` journals a
``head_accepted`` event naming who, why and those events, signed by the head signature of its
own commit and a checkpoint. Anything else that fails verification (an edited row, a forged
signature, a cut tail, a checkpoint that does not match) is never accepted.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from config.errors import ConfigError, IntegrityError
from journal import Journal, VerifyReport, VerifyStatus, kinds
from orchestrator._session import SessionSettings

__all__ = ["MISSING", "strict", "acceptance_notes", "Review", "review", "accept", "sign_head"]

MISSING = "meta head_signature: missing"
_STALE = "meta head_signature: signs head seq "
_SUMMARY = 50  # events listed in the acceptance event and on screen (the count and range are always whole)


def strict(report: VerifyReport, *, keyed: bool) -> VerifyReport:
    """``report`` (checked with a trusted key: ``keyed``) with a missing head signature turned into a failure."""
    if not keyed or not report.ok or report.head_signed is not None or report.head_seq == 0:
        return report
    if report.status == VerifyStatus.CHAIN_ONLY:
        return report  # signatures were not asked for
    problem = (
        f"{MISSING} although the journal has {report.head_seq} events (deleted, or written before head signatures)"
    )
    if report.head_seq > report.signed_seq:
        problem += f": nothing proves events {report.signed_seq + 1}..{report.head_seq}"
    problem += "; after checking them, `orchestrator journal sign-head --by WHO --yes` accepts them (journaled)"
    notes = [p for p in report.problems if not p.startswith("warning: no head signature")]
    return dataclasses.replace(report, ok=False, status=VerifyStatus.FAILED, problems=[problem, *notes])


def acceptance_notes(journal: Journal) -> list[str]:
    """One line per ``head_accepted`` event: who accepted which events without a signature, and why."""
    notes = []
    for event in journal.events(kinds=[kinds.HEAD_ACCEPTED]):
        p = event.payload
        first, last = p.get("first_seq"), p.get("last_seq")
        which = f"events {first}..{last}" if p.get("count") else "no unsigned event"
        notes.append(
            f"note: seq {event.seq}: {event.actor} accepted {which} ({p.get('why')}) at {event.at} with "
            f"`journal sign-head`: {p.get('reason') or 'no reason given'}"
        )
    return notes


@dataclass(frozen=True)
class Review:
    """What ``sign-head`` would accept: why, the last event a signature covers, and the events after it."""

    why: str
    covered: int
    head_seq: int
    head_hash: str
    events: list[dict[str, Any]]

    @property
    def nothing_to_accept(self) -> bool:
        return self.why == ""


def _stale_signature(journal: Journal, report: VerifyReport) -> int | None:
    """The seq the head signature covers when it only lags the head (events appended without the key)."""
    problems = [p for p in report.problems if not p.startswith("warning:")]
    if report.head_signed is not False or len(problems) != 1 or not problems[0].startswith(_STALE):
        return None
    record = json.loads(journal.get_meta("head_signature") or "{}")
    seq = record.get("seq")
    if not isinstance(seq, int) or not 0 < seq < report.head_seq:
        return None  # a cut tail, or a signature over no event
    event = next(iter(e for e in journal.events() if e.seq == seq), None)
    return seq if event is not None and event.hash == record.get("head") else None


def review(journal: Journal, report: VerifyReport) -> Review:
    """What the operator is asked to accept, from a full verification with the trusted key.

    Raises:
        IntegrityError: the journal fails for another reason than its head signature (exit 4).
    """
    head = json.loads(journal.get_meta("head") or '{"seq": 0, "hash": ""}')
    if report.ok and report.head_signed:
        return Review("", report.head_seq, report.head_seq, head["hash"], [])
    if report.ok and report.head_signed is None and report.head_seq > 0:
        why, covered = "no head signature", report.signed_seq
    else:
        stale = _stale_signature(journal, report)
        if stale is None:
            raise IntegrityError(
                f"journal {journal.path}: refusing to sign its head: it fails verification for more than its head "
                "signature, and that is never accepted:\n  " + "\n  ".join(report.problems)
            )
        why, covered = f"the head signature covers seq {stale} only", max(stale, report.signed_seq)
    events = [
        {"seq": e.seq, "at": e.at, "node": e.node, "kind": e.kind, "step": e.step, "actor": e.actor}
        for e in journal.events()
        if e.seq > covered
    ]
    return Review(why, covered, report.head_seq, head["hash"], events)


def _require_by(by: str) -> None:
    if not by.strip():
        raise ConfigError([("--by", "say who accepts the unsigned events (a name or an ID), for the audit record")])


def accept(journal: Journal, seen: Review, *, by: str, reason: str | None) -> int:
    """Journal the operator's acceptance (the journal signs heads: the commit signs it). Returns its seq."""
    _require_by(by)
    payload = {
        "why": seen.why,
        "count": len(seen.events),
        "first_seq": seen.covered + 1 if seen.events else None,
        "last_seq": seen.head_seq if seen.events else None,
        "head_seq": seen.head_seq,
        "head_hash": seen.head_hash,
        "events": seen.events[:_SUMMARY],
        "reason": reason or "",
    }
    return journal.record(node=None, kind=kinds.HEAD_ACCEPTED, actor=by, payload=payload).seq


def sign_head(settings: SessionSettings, *, by: str, reason: str | None, yes: bool) -> tuple[Review, int | None, str]:
    """``journal sign-head``: review the journal the settings resolve to, and with ``yes`` accept what it shows.

    Returns:
        The review, the acceptance event's seq (None: not accepted, or nothing to accept), the key's source.

    Raises:
        ConfigError: no signing key (nothing can be accepted without it), no ``--by``.
        IntegrityError: the journal fails for another reason than its head signature.
    """
    from orchestrator._session import existing_journal, load_deployment
    from orchestrator._settings import open_journal_file
    from orchestrator._trust import Checkpointer, trusted_key
    from orchestrator.wiring import open_syslog

    _require_by(by)
    path = existing_journal(settings)
    deployment = load_deployment(settings, required=False, check_secrets=False)
    trust = trusted_key(deployment, path)
    if trust is None:
        raise ConfigError(
            [
                (
                    "journal.signing_key",
                    f"journal sign-head signs with the journal's key and there is none for {path}: set "
                    "journal.signing_key (the key that signed it); without it nothing can be accepted",
                )
            ]
        )
    with open_journal_file(path) as journal:
        with journal.batch():  # reviewed and accepted in one transaction: nothing slips in between
            kept = journal.checkpoints_path if journal.checkpoints_path and journal.checkpoints_path.is_file() else None
            seen = review(journal, journal.verify(public_key=trust.signer, checkpoints=kept))
            seq = None
            if yes and not seen.nothing_to_accept:
                journal.sign_heads(trust.signer)
                seq = accept(journal, seen, by=by, reason=reason)
        if seq is not None:
            syslog = open_syslog(deployment) if deployment is not None else None
            Checkpointer(journal, trust, syslog).now()
    return seen, seq, trust.source
