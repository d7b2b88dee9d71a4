"""The ``orchestrator`` command: a thin skin over ``orchestrator.api``.

Each command parses its arguments, calls one library function and prints the result with
``orchestrator._format``. The library is imported inside the commands: ``--help`` stays fast.

Exit codes (a contract): 0 done; 1 a step failed (or another process holds a node);
2 bad input (the message names the field and the fix); 3 waiting on a gate;
4 the journal failed its integrity check.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from config.errors import ConfigError, DefinitionChanged, IntegrityError, OrchestratorError, ResourceLocked
from machines.lifecycle import LDAP_AUTHENTICATED, MILESTONES
from orchestrator import _format

if TYPE_CHECKING:
    from orchestrator.api import ObserverFactory, SessionSettings

__all__ = ["main", "cli"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_WAITING, EXIT_INTEGRITY = 0, 1, 2, 3, 4


def _fail(code: int, message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map the error tree onto the exit codes, with the message on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            _fail(EXIT_BAD_INPUT, "bad input:\n  " + str(exc).replace("\n", "\n  "))
        except DefinitionChanged as exc:
            _fail(EXIT_BAD_INPUT, str(exc))
        except IntegrityError as exc:
            _fail(EXIT_INTEGRITY, str(exc))
        except ResourceLocked as exc:
            _fail(EXIT_FAILED, str(exc))
        except OrchestratorError as exc:
            _fail(EXIT_FAILED, str(exc))

    return wrapper


class Options:
    """The global options, turned into the library's settings by each command."""

    def __init__(self, config: str | None, journal: str | None, log_level: str) -> None:
        self.config = config
        self.journal = journal
        self.log_level = log_level

    def session(self, *, actor: str = "orchestrator", allow_version_change: bool = False) -> SessionSettings:
        from orchestrator.api import SessionSettings

        return SessionSettings(
            config=Path(self.config) if self.config else None, journal=Path(self.journal) if self.journal else None,
            actor=actor, allow_version_change=allow_version_change,
        )

    def live(self, as_json: bool) -> bool:
        """Whether the live display runs; configures the logs to match (quieter under the display)."""
        from orchestrator.logs import configure_logging

        live = sys.stdout.isatty() and not as_json
        configure_logging(self.log_level or ("WARNING" if live else "INFO"))
        return live


def _display(as_json: bool, live: bool) -> ObserverFactory | None:
    return None if as_json else functools.partial(_format.progress, live=live)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config", metavar="FILE", help="Deployment file (TOML). Default: $ORCHESTRATOR_CONFIG, else ./orchestrator.toml.")
@click.option("--journal", metavar="FILE", help="Journal (SQLite). Default: $ORCHESTRATOR_JOURNAL, the config's journal.path, else ./orchestrator.journal.sqlite.")
@click.option("--log-level", default="", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR (default: WARNING with the live display, else INFO).")
@click.pass_context
def cli(ctx: click.Context, config: str | None, journal: str | None, log_level: str) -> None:
    """Drive a Pexip Infinity deployment through the Secure Mode Deployment Guide."""
    ctx.obj = Options(config, journal, log_level)


@cli.command()
@click.argument("nodes", nargs=-1)
@click.option("--until", type=click.Choice(MILESTONES), default=LDAP_AUTHENTICATED, show_default=True, help="Stop every node at this state.")
@click.option("--dry-run", is_flag=True, help="Read-only plan: per node and step, what would change (field: now -> wanted).")
@click.option("--json", "as_json", is_flag=True, help="Print the result (or the plan) as JSON.")
@click.option("--allow-version-change", is_flag=True, help="Resume a journal written by another lifecycle definition (journaled).")
@click.pass_obj
@handle_errors
def run(options: Options, nodes: tuple[str, ...], until: str, dry_run: bool, as_json: bool, allow_version_change: bool) -> None:
    """Drive nodes (default: all) to their target state."""
    from orchestrator import api

    settings = options.session(allow_version_change=allow_version_change)
    live = options.live(as_json)
    if dry_run:
        _format.plan(asyncio.run(api.plan(settings, nodes=nodes or None, until=until)), as_json)
        return
    report = asyncio.run(api.run(settings, nodes=nodes or None, until=until, observer_factory=_display(as_json, live)))
    sys.exit(_format.report(report, as_json))


@cli.command()
@click.option("--nodes", type=int, default=4, show_default=True, help="1 Management Node + N-1 Conferencing Nodes.")
@click.option("--latency", type=float, default=0.0, show_default=True, help="Seconds per simulated side effect (with jitter).")
@click.option("--faults", default="", metavar="SPEC", help="e.g. transient=0.1,permanent=reserve_resources@pexip-conf-00002,exit=security_wizard,seed=7")
@click.option("--world", type=click.Path(dir_okay=False, path_type=Path), default=Path("simulation.world.sqlite"), show_default=True, help="The simulated world's own SQLite file.")
@click.option("--effects-out", type=click.Path(dir_okay=False, path_type=Path), help="Write every change applied to the world, counted per node and kind, as JSON.")
@click.option("--fresh", is_flag=True, help="Delete the journal and world first and start a new simulation.")
@click.option("--concurrency", type=int, default=None, help="Nodes driven at once (default: the policy's concurrency.max_nodes).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--allow-version-change", is_flag=True, help="Resume a journal written by another lifecycle definition (journaled).")
@click.pass_obj
@handle_errors
def simulate(options: Options, nodes: int, latency: float, faults: str, world: Path, effects_out: Path | None, fresh: bool, concurrency: int | None, as_json: bool, allow_version_change: bool) -> None:
    """A whole deployment against the simulated world (resumable: run it again after a crash)."""
    from orchestrator import api

    journal = Path(options.journal) if options.journal else Path("simulation.journal.sqlite")
    live = options.live(as_json)
    sim = api.SimulationSettings(
        nodes=nodes, latency=latency, faults=faults, world=world, journal=journal, effects_out=effects_out, fresh=fresh,
        max_concurrency=concurrency,
    )
    factory = _display(as_json, live)
    report, _effects = asyncio.run(api.simulate(sim, observer_factory=factory, allow_version_change=allow_version_change))
    sys.exit(_format.report(report, as_json))


@cli.command()
@click.argument("node", required=False)
@click.option("--all", "all_nodes", is_flag=True, help="Every node.")
@click.option("--from-step", metavar="STEP", help="Run again from this step (it observes first: nothing right is redone).")
@click.option("--by", default=None, help="Who resumes (for the journal). Default: $USER.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--allow-version-change", is_flag=True, help="Resume a journal written by another lifecycle definition (journaled).")
@click.pass_obj
@handle_errors
def resume(options: Options, node: str | None, all_nodes: bool, from_step: str | None, by: str | None, as_json: bool, allow_version_change: bool) -> None:
    """Continue NODE (or --all) from its last committed state; failed nodes are retried."""
    from orchestrator import api

    actor = by or os.environ.get("USER") or "operator"
    settings = options.session(actor=actor, allow_version_change=allow_version_change)
    factory = _display(as_json, options.live(as_json))
    report = asyncio.run(api.resume(settings, node, all_nodes=all_nodes, from_step=from_step, observer_factory=factory))
    sys.exit(_format.report(report, as_json))


@cli.command()
@click.argument("node", required=False)
@click.option("--json", "as_json", is_flag=True, help="Stable JSON: a list of node objects.")
@click.pass_obj
@handle_errors
def status(options: Options, node: str | None, as_json: bool) -> None:
    """State, step in progress, gate waited on, last error, and why, per node."""
    from orchestrator import api

    with api.open_existing_journal(options.session(allow_version_change=True), readonly=True) as journal:
        rows = api.status(journal, node)
    _format.status(str(journal.path), rows, as_json)


@cli.command()
@click.argument("node")
@click.argument("gate")
@click.option("--by", required=True, help="Who approves (name or ID), for the audit record.")
@click.option("--reason", default=None, help="Why (ticket, change number).")
@click.pass_obj
@handle_errors
def approve(options: Options, node: str, gate: str, by: str, reason: str | None) -> None:
    """Open an approval GATE of NODE: security_wizard or bios_password. Then resume."""
    from orchestrator import api

    with api.open_existing_journal(options.session(actor=by, allow_version_change=True)) as journal:
        result = api.approve(journal, node, gate, by=by, reason=reason)
    click.echo(f"approved {gate} for {node} by {by} (journal seq {result['seq']}); continue with `orchestrator resume {node}`")


@cli.group()
def cert() -> None:
    """Certificates from the CA."""


@cert.command("import")
@click.argument("node")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
@handle_errors
def cert_import(options: Options, node: str, file: Path) -> None:
    """The CA's signed certificate for NODE's pending CSR."""
    from orchestrator import api

    with api.open_existing_journal(options.session(allow_version_change=True)) as journal:
        result = api.cert_import(journal, node, file)
    click.echo(f"certificate {result['subject']} recorded for {node}; continue with `orchestrator resume {node}`")


@cli.command()
@click.argument("node")
@click.argument("mode", type=click.Choice(["on", "off"]))
@click.option("--by", required=True, help="Who (for the audit record).")
@click.option("--reason", default=None)
@click.pass_obj
@handle_errors
def maintenance(options: Options, node: str, mode: str, by: str, reason: str | None) -> None:
    """Stop (on) or restart (off) automation for NODE without losing its place."""
    from orchestrator import api

    with api.open_existing_journal(options.session(actor=by, allow_version_change=True)) as journal:
        api.set_maintenance(journal, node, mode == "on", by=by, reason=reason)
    click.echo(f"{node}: maintenance {mode}")


@cli.group("journal")
def journal_group() -> None:
    """The audit record: export it, verify it, the public key that proves it."""


@journal_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--node", default=None, help="Only this node's events.")
@click.option("--since", default=None, metavar="TIME", help="ISO-8601 time (UTC if no zone): events at or after it.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File (default: stdout), replaced atomically, 0600.")
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
@click.option("--public-key", "public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="The trusted public key (PEM), e.g. from `journal public-key`. Default: the configured signing key's.")
@click.option("--checkpoints", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="An independently kept checkpoint list: <journal>.checkpoints, or what a syslog server received.")
@click.option("--chain-only", is_flag=True, help="Check the hash chain alone (no signatures: says nothing about who wrote it).")
@click.pass_obj
@handle_errors
def journal_verify(options: Options, file: Path | None, public_key: Path | None, checkpoints: Path | None, chain_only: bool) -> None:
    """Check the journal, or an export FILE: chain, node rows, signatures (exit 4 unless VERIFIED)."""
    from orchestrator import api

    result = api.verify(options.session(), file, public_key=public_key, checkpoints=checkpoints, chain_only=chain_only)
    report = result.report
    for line in report.problems:
        click.echo(line, err=True)
    if report.status == "CHAIN_ONLY":
        click.echo(f"{result.what}: CHAIN_ONLY: {report.events} events, chain intact; signatures not checked (--chain-only)")
        return
    if report.status == "VERIFIED":
        click.echo(f"{result.what}: VERIFIED: {report.events} events checked, signed up to seq {report.signed_seq}; key: {result.key}")
        return
    if report.status == "UNVERIFIED" and report.ok:
        why = "no trusted public key: pass --public-key PEM" if result.key is None else f"nothing signed by {result.key}"
        click.echo(f"{result.what}: UNVERIFIED ({why})", err=True)
    else:
        click.echo(f"{result.what}: {report.status}: INTEGRITY CHECK FAILED ({len(report.problems)} problem(s)); key: {result.key}", err=True)
    sys.exit(EXIT_INTEGRITY)


@journal_group.command("public-key")
@click.pass_obj
@handle_errors
def journal_public_key(options: Options) -> None:
    """Print the public key (PEM) that verifies the journal: give it to the auditor."""
    from orchestrator import api

    pem, source = api.public_key(options.session())
    click.echo(pem, nl=False)
    click.echo(f"(public key of {source})", err=True)


@cli.group()
def lab() -> None:
    """The local lab of simulators on 127.0.0.1, and a configuration for it."""


@lab.command("up")
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".lab"), show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def lab_up(lab_dir: Path, as_json: bool) -> None:
    """Build (when needed) and start the simulators; write a deployment configuration for them."""
    from orchestrator.lab import lab_up as up

    result = up(lab_dir)
    _format.lab(result, as_json)


@lab.command("down")
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".lab"), show_default=True)
@handle_errors
def lab_down(lab_dir: Path) -> None:
    """Stop the simulators."""
    from orchestrator.lab import lab_down as down

    down(lab_dir)
    click.echo("lab stopped")


@lab.command("status")
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".lab"), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Each simulator's url, user, password (lab only), ca_file; and config.")
@handle_errors
def lab_status(lab_dir: Path, as_json: bool) -> None:
    """Where the simulators listen and the configuration that `run` uses against them."""
    from orchestrator.lab import lab_status as st

    _format.lab(st(lab_dir), as_json)


def main() -> None:
    cli(prog_name="orchestrator")


if __name__ == "__main__":
    main()
