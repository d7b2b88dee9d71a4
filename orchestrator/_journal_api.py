"""The commands that only read or write the journal: status, gates, maintenance, export, verify.

They take the open journal (a session's, or :func:`orchestrator.api.open_existing_journal`'s), except
``export``, ``verify`` and ``public_key``, which open the journal the settings resolve to read-only:
they never create or alter a journal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from config.errors import ConfigError
from journal import Journal, VerifyReport, kinds, load_public_key, public_key_pem, verify_export
from machines.lifecycle import APPROVAL_GATES, CERTIFIED, FAILED, GATES, milestone_index
from machines.plan import next_action
from orchestrator._settings import (
    SessionSettings,
    existing_journal,
    journal_path,
    load_deployment,
    open_readonly_journal,
    resolved_journal,
)

if TYPE_CHECKING:
    # Types only: `status` reads the journal without the configuration's model or the trust
    # (cryptography); the commands that need them import them where used (start-up, #11).
    from config.model import Deployment
    from orchestrator._trust import Trust

__all__ = [
    "status",
    "approve",
    "cert_import",
    "check_renewable",
    "set_maintenance",
    "export",
    "verify",
    "public_key",
    "Verification",
]


# --- status, gates, maintenance ---------------------------------------------------------


def status(journal: Journal, node: str | None = None, *, not_settable: bool | None = None) -> list[dict[str, Any]]:
    """Where each node stands and why (stable keys: the ``--json`` contract).

    ``not_settable`` (default: when one ``node`` is asked for): each row also gets ``"not_settable"``,
    ``{step: [setting, ...]}`` from each step's last ``step_committed``: what this Manager's version could not take
    and the step left out of its write (pexip-api.md 7.9). It reads the journal's step records, so the plain table
    of every node goes without it.
    """
    records = journal.nodes()
    if not_settable is None:
        not_settable = node is not None
    skipped = _not_settable(journal, node) if not_settable else None
    management = next((r for r in records if r.role == "management"), None)
    out: list[dict[str, Any]] = []
    for r in records:
        if node and r.name != node:
            continue
        action = next_action(
            role=r.role,
            state=r.state,
            step=r.step,
            management_state=management.state if management else None,
            management_step=management.step if management else None,
            maintenance=r.maintenance,
            last_error=r.last_error,
            gate=r.gate,
            node=r.name,
        )
        out.append(
            {
                "node": r.name,
                "role": r.role,
                "state": r.state,
                "step": r.step,
                "attempt": r.attempt,
                "gate": r.gate,
                "last_error": r.last_error,
                "failed_from": r.failed_from,
                "maintenance": bool(r.maintenance),
                "maintenance_reason": r.maintenance_reason,
                "lease": (
                    {"owner": r.lease_owner, "pid": r.lease_pid, "since": r.lease_since} if r.lease_owner else None
                ),
                "updated_at": r.updated_at,
                "next": {"action": type(action).__name__.lower(), "reason": action.reason},
            }
        )
        if skipped is not None:
            out[-1]["not_settable"] = skipped.get(r.name, {})
    if node and not out:
        raise ConfigError([("NODE", f"no node {node!r} in the journal; nodes: {[r.name for r in records]}")])
    return out


def _not_settable(journal: Journal, node: str | None) -> dict[str, dict[str, list[str]]]:
    """``{node: {step: settings}}``: each step's last commit that left settings out (a later one that took them all
    clears its step: the Manager was upgraded)."""
    # Only the nodes with such a commit are read whole (SQLite picks them without decoding the rest: issue #11).
    found = {e.node for e in journal.events(node=node, kinds=[kinds.STEP_COMMITTED], payload_key="not_settable")}
    last: dict[str, dict[str, list[str]]] = {}
    for name in sorted(n for n in found if n is not None):
        steps = last.setdefault(name, {})
        for event in journal.events(node=name, kinds=[kinds.STEP_COMMITTED]):
            settings = event.payload.get("not_settable") or []
            if event.step is None:
                continue
            if settings:
                steps[event.step] = [str(s) for s in settings]
            else:
                steps.pop(event.step, None)
    return last


def _require_node(journal: Journal, node: str) -> Any:
    record = journal.node(node)
    if record is None:
        raise ConfigError([("NODE", f"no node {node!r} in the journal; nodes: {[r.name for r in journal.nodes()]}")])
    return record


def _deployment(settings: SessionSettings | None, deployment: Deployment | None) -> Deployment | None:
    """The deployment given, else the one the settings' configuration describes (None: no configuration)."""
    if deployment is not None or settings is None:
        return deployment
    return load_deployment(settings, required=False, check_secrets=False)


def approve(
    journal: Journal,
    node: str,
    gate: str,
    *,
    by: str,
    reason: str | None = None,
    deployment: Deployment | None = None,
    settings: SessionSettings | None = None,
) -> dict[str, Any]:
    """Open an approval gate (journaled with who and why). May be given before the node gets there.

    Returns ``already_open`` True (and the earlier approval's ``by`` and ``seq``) when the gate is open
    and not yet used: nothing is journaled twice.

    Raises:
        ConfigError: not an approval gate, no ``by``, or a gate the node can never reach (a step its
            role lacks, a gate the deployment does not use, a milestone the node is past).
    """
    record = _require_node(journal, node)
    if gate not in APPROVAL_GATES:
        allowed = sorted(APPROVAL_GATES)
        raise ConfigError(
            [
                (
                    "GATE",
                    f"{gate!r} is not an approval gate; approval gates: {allowed} "
                    "(a certificate comes with `orchestrator cert import`)",
                )
            ]
        )
    if not by.strip():
        raise ConfigError([("--by", "say who approves (a name or an ID), for the audit record")])
    from orchestrator._gates import pending_gate, unreachable_gate  # the engine's modules: not for `status`

    never = unreachable_gate(record.role, record.state, record.failed_from, gate, _deployment(settings, deployment))
    if never:
        raise ConfigError([("GATE", f"{node} never reaches {gate}: {never}; nothing was approved")])
    opened = pending_gate(journal, node, gate)
    if opened is not None:
        return {"node": node, "gate": gate, "by": opened.actor, "seq": opened.seq, "already_open": True}
    event = journal.record(
        node=node,
        kind=kinds.GATE_OPENED,
        step=GATES[gate]["step"],
        actor=by,
        payload={"gate": gate, "approved": True, "reason": reason or ""},
    )
    return {"node": node, "gate": gate, "by": by, "seq": event.seq, "already_open": False}


def cert_import(
    journal: Journal,
    node: str,
    path: Path,
    *,
    by: str,
    deployment: Deployment | None = None,
    settings: SessionSettings | None = None,
) -> dict[str, Any]:
    """The CA's signed certificate for the node's pending CSR, checked before anything is recorded.

    Args:
        deployment: for ``pki.ca_chain`` and the node's FQDN; default: loaded from ``settings``.

    Raises:
        ConfigError: no configuration, an unreadable file, or a certificate that is not for the
            node's pending CSR, does not chain to ``pki.ca_chain``, is not valid now or for the
            node's FQDN, or lacks server and client usage (nothing is journaled, the CSR stays).
    """
    from orchestrator._cert_check import certificate_problems, load_pem_certificates
    from orchestrator.steps.pki_steps import subject_name

    record = _require_node(journal, node)
    if not by.strip():
        raise ConfigError([("--by", "say who imports the certificate (a name or an ID), for the audit record")])
    deployment = _deployment(settings, deployment)
    if deployment is None:
        raise ConfigError(
            [
                (
                    "-c/--config",
                    "cert import checks the certificate against the deployment's "
                    "pki.ca_chain and the node's FQDN: pass -c FILE",
                )
            ]
        )
    spec = next((n for n in deployment.nodes if n.name == node), None)
    if spec is None:
        raise ConfigError([("NODE", f"{node!r} is not a node of deployment {deployment.name}")])
    try:
        pem = path.read_text()
        cert, *_ = load_pem_certificates(pem)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [("FILE", f"{path}: not a readable PEM certificate ({exc}); give the CA's signed certificate, not the CSR")]
        ) from exc
    chain_file = _chain_file(deployment)
    try:
        chain = load_pem_certificates(chain_file.read_text()) if chain_file else []
    except (OSError, ValueError) as exc:
        raise ConfigError([("pki.ca_chain", f"{chain_file}: not a readable PEM chain ({exc})")]) from exc
    if not chain:
        raise ConfigError([("pki.ca_chain", "is not set: a certificate cannot be checked against the trusted CA")])
    here = record.failed_from if record.state == FAILED and record.failed_from else record.state
    waiting = (
        None
        if milestone_index(here) > milestone_index("certifying")
        else journal.last_event(node, kind=kinds.GATE_WAITING)
    )
    csr = waiting.payload.get("csr") if waiting is not None and waiting.payload.get("gate") == "certificate" else None
    problems = certificate_problems(
        cert,
        csr_pem=csr,
        chain=chain,
        fqdn=subject_name(deployment, spec),
        min_valid_days=deployment.pki.min_valid_days,
    )
    if problems:
        raise ConfigError([("FILE", f"{path}: refused for {node}, nothing recorded: " + "; ".join(problems))])
    event = journal.record(
        node=node,
        kind=kinds.GATE_OPENED,
        step=GATES["certificate"]["step"],
        actor=by,
        payload={
            "gate": "certificate",
            "certificate": pem,
            "subject": cert.subject.rfc4514_string(),
            "serial": format(cert.serial_number, "x"),
        },
    )
    return {"node": node, "subject": cert.subject.rfc4514_string(), "seq": event.seq, "by": by}


def check_renewable(journal: Journal, node: str) -> None:
    """``cert renew``: NODE is in the journal and past ``certified`` (it has a certificate to renew).

    Raises:
        ConfigError: naming NODE and what to do.
    """
    record = _require_node(journal, node)
    here = record.failed_from if record.state == FAILED and record.failed_from else record.state
    if milestone_index(here) < milestone_index(CERTIFIED):
        raise ConfigError([("NODE", f"{node} is at {here}: no certificate to renew yet; run it to certified first")])


def _chain_file(deployment: Deployment) -> Path | None:
    """``pki.ca_chain`` as the manual CA reads it: relative to the configuration file."""
    if not deployment.pki.ca_chain:
        return None
    base = Path(deployment.source).parent if deployment.source else Path.cwd()
    return base / deployment.pki.ca_chain


def set_maintenance(journal: Journal, node: str, on: bool, *, by: str, reason: str | None = None) -> dict[str, Any]:
    """Stop (or restart) automation for one node without losing its place.

    A process running the node reads it from the journal before the node's next step.
    """
    record = _require_node(journal, node)
    if not by.strip():
        raise ConfigError([("--by", "say who sets maintenance (a name or an ID), for the audit record")])
    event = journal.record(
        node=node,
        kind=kinds.MAINTENANCE_ON if on else kinds.MAINTENANCE_OFF,
        actor=by,
        payload={"reason": reason or ""},
        update={"maintenance": on, "maintenance_reason": reason if on else None},
    )
    return {"node": node, "maintenance": on, "state": record.state, "seq": event.seq}


# --- export, verify, public key ---------------------------------------------------------


def _operator_key(settings: SessionSettings, path: Path) -> Trust | None:
    """The operator's key for the journal at ``path``: the configured signing key, else a simulation's.

    Never a key found in what is verified: the configuration and the simulation's private
    key directory are the operator's, not the journal's.
    """
    from orchestrator._trust import trusted_key

    return trusted_key(_operator_deployment(settings), path)


def _operator_deployment(settings: SessionSettings) -> Deployment | None:
    """The operator's configuration, when there is one (its key, its journal group)."""
    try:
        return load_deployment(settings, required=False, check_secrets=False)
    except ConfigError:
        if settings.config is not None:
            raise  # the configuration the caller named is bad input, never "no key, fine"
        return None  # a default configuration that does not load names no key


def _resolved(settings: SessionSettings) -> Path:
    try:
        return resolved_journal(settings)
    except ConfigError:
        return journal_path(settings)  # a configuration that does not load names no journal


def export(
    settings: SessionSettings,
    out: TextIO | Path,
    *,
    fmt: str = "jsonl",
    node: str | None = None,
    since: str | None = None,
) -> int:
    """Export the journal with a seal that :func:`verify` checks; returns the number of events written.

    The journal is opened read-only. The seal is signed with the operator's key when there is one.

    Args:
        out: a stream, or a file, replaced atomically (0600): a killed export leaves the previous file.
        since: ISO-8601 time (UTC if no zone): only events at or after it.
    """
    from orchestrator._access import share_with_group
    from orchestrator._trust import trusted_key

    if since:
        try:
            datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError([("--since", f"{since!r} is not an ISO-8601 time; e.g. 2026-11-28T10:00:00Z")]) from exc
    path = existing_journal(settings)
    deployment = _operator_deployment(settings)
    trust = trusted_key(deployment, path)
    signer = trust.signer if trust is not None else None
    with open_readonly_journal(path) as journal:
        if isinstance(out, Path):
            written = journal.export_to(out, fmt=fmt, node=node, since=since, signer=signer)
            share_with_group([out], deployment.journal.group if deployment is not None else "")
            return written
        return journal.export(out, fmt=fmt, node=node, since=since, signer=signer)


@dataclass(frozen=True)
class Verification:
    """What was verified (the journal's or the export's path), the report, and which key was trusted."""

    what: str
    report: VerifyReport
    key: str | None = None  # where the trusted public key came from; None: no key


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def verify(
    settings: SessionSettings,
    file: Path | None = None,
    *,
    public_key: Path | str | bytes | None = None,
    checkpoints: Path | None = None,
    chain_only: bool = False,
) -> Verification:
    """The journal the settings resolve to, or ``file`` (a journal or an export), against a trusted key.

    Args:
        public_key: the auditor's PEM (file or text). Without it, the public key of the configured
            signing key (or of the simulation's key) is used, never one found in what is verified;
            with no key at all the status is ``UNVERIFIED``.
        checkpoints: an independently kept checkpoint list (``<journal>.checkpoints``, or the lines
            a syslog server received).
        chain_only: check the chain alone (status ``CHAIN_ONLY``, says so).
    """
    key: Any = None
    source: str | None = None
    if public_key is not None:
        key = load_public_key(public_key)
        source = f"--public-key {public_key}" if isinstance(public_key, Path) else "--public-key"
    elif not chain_only:
        trust = _operator_key(settings, file if file is not None and _is_sqlite(file) else _resolved(settings))
        if trust is not None:
            key, source = trust.signer.public_key, trust.source
    if file is not None and not _is_sqlite(file):
        if checkpoints is not None:
            raise ConfigError([("--checkpoints", "checks a journal, not an export; give the journal's file")])
        return Verification(str(file), verify_export(file, public_key=key, chain_only=chain_only), source)
    path = file or existing_journal(settings)
    with open_readonly_journal(path) as journal:
        local = journal.checkpoints_path
        if checkpoints is None and local is not None and local.is_file():
            checkpoints = local  # as before acting: the journal's own copy of its checkpoints must agree with it
        from orchestrator._head_accept import acceptance_notes, strict

        report = strict(
            journal.verify(public_key=key, checkpoints=checkpoints, chain_only=chain_only), keyed=key is not None
        )
        if report.ok and key is not None:  # the operators' acceptances of unsigned events, named as such
            report = replace(report, problems=[*report.problems, *acceptance_notes(journal)])
        return Verification(str(path), report, source)


def public_key(settings: SessionSettings) -> tuple[str, str]:
    """The PEM public key an auditor verifies with, and where its private key is (never the key itself).

    Raises:
        ConfigError: no signing key is configured and no simulation has made one for this journal.
    """
    path = _resolved(settings)
    trust = _operator_key(settings, path)
    if trust is None:
        raise ConfigError(
            [
                (
                    "journal.signing_key",
                    (
                        f"no signing key for journal {path}: set journal.signing_key in the configuration "
                        "(a simulation makes its own when it first runs)"
                    ),
                )
            ]
        )
    return public_key_pem(trust.signer), trust.source
