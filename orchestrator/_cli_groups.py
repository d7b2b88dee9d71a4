"""The ``journal`` and ``lab`` command groups of ``orchestrator.cli``: the audit record and the local lab."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from orchestrator import _format
from orchestrator._cli_base import EXIT_FAILED, EXIT_INTEGRITY, Options, handle_errors, output_option

__all__ = ["journal_group", "lab"]


@click.group("journal")
def journal_group() -> None:
    """The audit record: export it, verify it, accept an unsigned head, the public key that proves it."""


@journal_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--node", default=None, help="Only this node's events.")
@click.option("--since", default=None, metavar="TIME", help="ISO-8601 time (UTC if no zone): events at or after it.")
@output_option("File (default: stdout), replaced atomically, 0600.")
@click.pass_obj
@handle_errors
def journal_export(options: Options, fmt: str, node: str | None, since: str | None, output: Path | None) -> None:
    """Export the journal with a seal (signed with the journal's key) that `journal verify FILE` checks."""
    from orchestrator import api

    n = api.export(options.session(), output or sys.stdout, fmt=fmt, node=node, since=since)
    if output:
        click.echo(f"exported {n} events to {output}", err=True)


@journal_group.command("verify")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    "public_key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The trusted public key (PEM), e.g. from `journal public-key`. Default: the configured signing key's.",
)
@click.option(
    "--checkpoints",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="An independently kept checkpoint list: <journal>.checkpoints, or what a syslog server received.",
)
@click.option(
    "--chain-only", is_flag=True, help="Check the hash chain alone (no signatures: says nothing about who wrote it)."
)
@click.pass_obj
@handle_errors
def journal_verify(
    options: Options, file: Path | None, public_key: Path | None, checkpoints: Path | None, chain_only: bool
) -> None:
    """Check the journal, or an export FILE: chain, node rows, signatures (exit 4 unless VERIFIED)."""
    from orchestrator import api

    result = api.verify(options.session(), file, public_key=public_key, checkpoints=checkpoints, chain_only=chain_only)
    report = result.report
    for line in report.problems:
        click.echo(line, err=True)
    if report.status == "CHAIN_ONLY":
        click.echo(
            f"{result.what}: CHAIN_ONLY: {report.events} events, chain intact; signatures not checked (--chain-only)"
        )
        return
    if report.status == "VERIFIED":
        click.echo(
            f"{result.what}: VERIFIED: {report.events} events checked, signed up to seq {report.signed_seq}"
            f"{_head_words(report)}; key: {result.key}"
        )
        return
    if report.status == "UNVERIFIED" and report.ok:
        why = (
            "no trusted public key: pass --public-key PEM" if result.key is None else f"nothing signed by {result.key}"
        )
        click.echo(f"{result.what}: UNVERIFIED ({why})", err=True)
    else:
        click.echo(
            f"{result.what}: {report.status}: INTEGRITY CHECK FAILED ({len(report.problems)} problem(s)); key: "
            f"{result.key}",
            err=True,
        )
    sys.exit(EXIT_INTEGRITY)


def _head_words(report: Any) -> str:
    """How the head is proven: by its own signature, or (a journal written before head signatures) not."""
    if report.head_signed:
        return " (head signature holds)"
    if report.head_seq > report.signed_seq:
        return f" (no head signature: events {report.signed_seq + 1}..{report.head_seq} are chained only)"
    return " (no head signature)"


@journal_group.command("sign-head")
@click.option("--by", required=True, help="Who checked and accepts the unsigned events (name or ID), for the record.")
@click.option("--reason", default=None, help="Why (ticket, change number, what was checked).")
@click.option("--yes", is_flag=True, help="Accept the events shown (without it: show them, accept nothing).")
@click.pass_obj
@handle_errors
def journal_sign_head(options: Options, by: str, reason: str | None, yes: bool) -> None:
    """Accept, after checking them, events no signature covers (head signature missing or behind); needs the key."""
    from orchestrator._head_accept import sign_head

    seen, seq, source = sign_head(options.session(actor=by), by=by, reason=reason, yes=yes)
    if seen.nothing_to_accept:
        click.echo(f"the head signature holds (seq {seen.head_seq}); nothing to accept")
        return
    click.echo(f"{seen.why}; signed up to seq {seen.covered}; {len(seen.events)} event(s) no signature covers:")
    for e in seen.events[:50]:
        click.echo(
            f"  seq {e['seq']:>6}  {e['at']}  {e['node'] or '-':<16} {e['kind']:<20} {e['step'] or '-'}  "
            f"by {e['actor']}"
        )
    if len(seen.events) > 50:
        click.echo(f"  ... and {len(seen.events) - 50} more (`orchestrator journal export` lists them all)")
    if seq is None:
        click.echo("nothing accepted: check these events, then run again with --yes", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"accepted by {by} (journal seq {seq}, head signed and checkpointed with {source})")


@journal_group.command("public-key")
@click.pass_obj
@handle_errors
def journal_public_key(options: Options) -> None:
    """Print the public key (PEM) that verifies the journal: give it to the auditor."""
    from orchestrator import api

    pem, source = api.public_key(options.session())
    click.echo(pem, nl=False)
    click.echo(f"(public key of {source})", err=True)


@click.group()
def lab() -> None:
    """The local lab of simulators on 127.0.0.1, and a configuration for it."""


_LAB_DIR = click.option(
    "--dir",
    "lab_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".lab"),
    show_default=True,
    help="The lab's directory.",
)


@lab.command("up")
@_LAB_DIR
@click.option("--fresh", is_flag=True, help="Stop a running lab and remove its journal and world first: a new demo.")
@click.option("--json", "as_json", is_flag=True, help="Print the lab's status as JSON (the `lab status --json` shape).")
@handle_errors
def lab_up(lab_dir: Path, fresh: bool, as_json: bool) -> None:
    """Build (when needed) and start the simulators; write a deployment configuration for them."""
    from orchestrator.lab import lab_up as up

    result = up(lab_dir, fresh=fresh)
    _format.lab(result, as_json)


@lab.command("down")
@_LAB_DIR
@click.option(
    "--reset", is_flag=True, help="Also remove the lab's journal and world, so that the next lab starts anew."
)
@click.option("--json", "as_json", is_flag=True, help="Print {dir, stopped, was_up, removed} as JSON.")
@handle_errors
def lab_down(lab_dir: Path, reset: bool, as_json: bool) -> None:
    """Stop the simulators (with --reset: and forget the lab's runs)."""
    from orchestrator.lab import lab_down as down

    _format.lab_down(down(lab_dir, reset=reset), as_json)


@lab.command("status")
@_LAB_DIR
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Each simulator's url, user, password (lab only), ca_file; ldap's bind_dn, password_ref; the console's "
    "host_key_fingerprint; and config.",
)
@handle_errors
def lab_status(lab_dir: Path, as_json: bool) -> None:
    """Where the simulators listen and the configuration that `run` uses against them."""
    from orchestrator.lab import lab_status as st

    _format.lab(st(lab_dir), as_json, lab_dir)
