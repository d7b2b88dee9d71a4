"""The ``orchestrator`` command: a thin skin over ``orchestrator.api``.

Each command parses its arguments, calls one library function and prints the result with
``orchestrator._format``. The library is imported inside the commands: ``--help`` stays fast.

Exit codes (a contract, listed in ``_help.EXIT_CODES`` and every command's ``--help``): 0 done;
1 a step failed (or another process holds a node); 2 bad input (the message names the field and
the fix); 3 waiting on a gate; 4 the journal failed its integrity check; 70 a crash injected
into ``simulate`` by an ``exit`` fault.

The global options (``-c``, ``--journal``, ``--log-level``, ``-q``, ``-v``) are accepted before
or after the subcommand: ``orchestrator --journal J status`` = ``orchestrator status --journal J``.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from config.errors import ConfigError, DefinitionChanged, IntegrityError, OrchestratorError, ResourceLocked
from machines.lifecycle import LDAP_AUTHENTICATED, MILESTONES
from orchestrator import _format, _help

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

    def __init__(
        self, config: str | None, journal: str | None, log_level: str, quiet: bool = False, verbose: int = 0
    ) -> None:
        self.config = config
        self.journal = journal
        self.log_level = log_level
        self.quiet = quiet
        self.verbose = verbose

    def session(self, *, actor: str = "orchestrator", allow_version_change: bool = False) -> SessionSettings:
        from orchestrator._session import SessionSettings

        return SessionSettings(
            config=Path(self.config) if self.config else None,
            journal=Path(self.journal) if self.journal else None,
            actor=actor,
            allow_version_change=allow_version_change,
        )

    def live(self, as_json: bool) -> bool:
        """Whether the live display runs; configures the logs to match (quieter under the display)."""
        from orchestrator.logs import configure_logging

        live = sys.stdout.isatty() and not as_json and not self.quiet
        default = "ERROR" if self.quiet else ("WARNING" if live else "INFO")
        if self.verbose:
            default = "DEBUG" if self.verbose > 1 else "INFO"
        configure_logging(self.log_level or default)
        return live

    def display(self, as_json: bool, live: bool) -> ObserverFactory | None:
        """The progress display of a run (none with ``--json`` or ``-q``)."""
        return None if as_json or self.quiet else functools.partial(_format.progress, live=live)


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("pexip-secure-orchestrator")
    except PackageNotFoundError:  # run from a source tree that was never installed
        number = "unknown (not installed)"
    click.echo(f"orchestrator {number}")
    ctx.exit(0)


_GLOBAL = ("config", "journal", "log_level", "quiet", "verbose")


class _GlobalOption(click.Option):
    """A copy of a global option on a subcommand: given there, it wins over the one before it."""

    def handle_parse_result(self, ctx: click.Context, opts: Any, args: list[str]) -> tuple[Any, list[str]]:
        value, args = super().handle_parse_result(ctx, opts, args)
        if self.name and ctx.get_parameter_source(self.name) is ParameterSource.COMMANDLINE:
            setattr(ctx.ensure_object(Options), self.name, value)
        return value, args


def _add_global_options(group: click.Group, options: list[click.Parameter]) -> None:
    """Give every command under ``group`` a copy of the group's global options (same definitions)."""
    for cmd in group.commands.values():
        if isinstance(cmd, click.Group):
            _add_global_options(cmd, options)
            continue
        for option in options:
            clone = copy.copy(option)
            clone.__class__ = _GlobalOption
            clone.expose_value = False
            cmd.params.append(clone)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config",
    metavar="FILE",
    envvar="ORCHESTRATOR_CONFIG",
    show_envvar=True,
    help="Deployment file (TOML). Default: ./orchestrator.toml.",
)
@click.option(
    "--journal",
    metavar="FILE",
    envvar="ORCHESTRATOR_JOURNAL",
    show_envvar=True,
    help="Journal (SQLite). Default: the config's journal.path, else ./orchestrator.journal.sqlite (simulate: ./simulation.journal.sqlite).",
)
@click.option(
    "--log-level",
    default=None,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    metavar="LEVEL",
    help="DEBUG, INFO, WARNING or ERROR (default: WARNING with the live display, else INFO).",
)
@click.option(
    "-q", "--quiet", is_flag=True, default=False, help="Only errors and the outcome: no progress display, no recap."
)
@click.option("-v", "--verbose", count=True, help="More logs: -v INFO, -vv DEBUG (--log-level wins).")
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=_version, help="Print the version and exit."
)
@click.pass_context
def cli(ctx: click.Context, config: str | None, journal: str | None, log_level: str, quiet: bool, verbose: int) -> None:
    """Drive a Pexip Infinity deployment through the Secure Mode Deployment Guide."""
    ctx.obj = Options(config, journal, log_level, quiet, verbose)


@cli.command()
@click.argument("nodes", nargs=-1)
@click.option(
    "--until",
    type=click.Choice(MILESTONES),
    default=LDAP_AUTHENTICATED,
    show_default=True,
    help="Stop every node at this state.",
)
@click.option(
    "--dry-run", is_flag=True, help="Read-only plan: per node and step, what would change (field: now -> wanted)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result (or the plan) as JSON.")
@click.option(
    "--allow-version-change", is_flag=True, help="Resume a journal written by another lifecycle definition (journaled)."
)
@click.pass_obj
@handle_errors
def run(
    options: Options, nodes: tuple[str, ...], until: str, dry_run: bool, as_json: bool, allow_version_change: bool
) -> None:
    """Drive nodes (default: all) to their target state."""
    import asyncio  # here, not at the top: --help and status start without it

    from orchestrator import api

    settings = options.session(allow_version_change=allow_version_change)
    live = options.live(as_json)
    if dry_run:
        _format.plan(asyncio.run(api.plan(settings, nodes=nodes or None, until=until)), as_json)
        return
    factory = options.display(as_json, live)
    report = asyncio.run(api.run(settings, nodes=nodes or None, until=until, observer_factory=factory))
    sys.exit(_format.report(report, as_json, options.quiet))


@cli.command()
@click.option("--nodes", type=int, default=4, show_default=True, help="1 Management Node + N-1 Conferencing Nodes.")
@click.option(
    "--latency", type=float, default=0.0, show_default=True, help="Seconds per simulated side effect (with jitter)."
)
@click.option(
    "--faults",
    default="",
    metavar="SPEC",
    help="e.g. transient=0.1,permanent=reserve_resources@pexip-conf-00002,exit=security_wizard,seed=7",
)
@click.option(
    "--world",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("simulation.world.sqlite"),
    show_default=True,
    help="The simulated world's own SQLite file.",
)
@click.option(
    "--effects-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every change applied to the world, counted per node and kind, as JSON.",
)
@click.option("--fresh", is_flag=True, help="Delete the journal and world first and start a new simulation.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Nodes driven at once (default: the policy's concurrency.max_nodes).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--allow-version-change", is_flag=True, help="Resume a journal written by another lifecycle definition (journaled)."
)
@click.pass_obj
@handle_errors
def simulate(
    options: Options,
    nodes: int,
    latency: float,
    faults: str,
    world: Path,
    effects_out: Path | None,
    fresh: bool,
    concurrency: int | None,
    as_json: bool,
    allow_version_change: bool,
) -> None:
    """A whole deployment against the simulated world (resumable: run it again after a crash)."""
    import asyncio  # here, not at the top: --help and status start without it

    from orchestrator import api

    journal = Path(options.journal) if options.journal else Path("simulation.journal.sqlite")
    _check_fault_nodes(faults, nodes)
    live = options.live(as_json)
    sim = api.SimulationSettings(
        nodes=nodes,
        latency=latency,
        faults=faults,
        world=world,
        journal=journal,
        effects_out=effects_out,
        fresh=fresh,
        max_concurrency=concurrency,
    )
    factory = options.display(as_json, live)
    report, _effects = asyncio.run(
        api.simulate(sim, observer_factory=factory, allow_version_change=allow_version_change)
    )
    sys.exit(_format.report(report, as_json, options.quiet))


def _check_fault_nodes(faults: str, nodes: int) -> None:
    """``--faults STEP@NODE`` names a node of the simulated deployment (else nothing would ever fire)."""
    from orchestrator._sim_options import unknown_fault_nodes

    problem = unknown_fault_nodes(faults, nodes)
    if problem:
        raise click.BadParameter(problem, param_hint="'--faults'")


@cli.command()
@click.argument("node", required=False)
@click.option("--all", "all_nodes", is_flag=True, help="Every node.")
@click.option(
    "--from-step", metavar="STEP", help="Run again from this step (it observes first: nothing right is redone)."
)
@click.option("--by", default=None, help="Who resumes (for the journal). Default: $USER.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--allow-version-change", is_flag=True, help="Resume a journal written by another lifecycle definition (journaled)."
)
@click.pass_obj
@handle_errors
def resume(
    options: Options,
    node: str | None,
    all_nodes: bool,
    from_step: str | None,
    by: str | None,
    as_json: bool,
    allow_version_change: bool,
) -> None:
    """Continue NODE (or --all) from its last committed state; failed nodes are retried."""
    import asyncio  # here, not at the top: --help and status start without it

    from orchestrator import api

    actor = by or os.environ.get("USER") or "operator"
    settings = options.session(actor=actor, allow_version_change=allow_version_change)
    factory = options.display(as_json, options.live(as_json))
    report = asyncio.run(api.resume(settings, node, all_nodes=all_nodes, from_step=from_step, observer_factory=factory))
    sys.exit(_format.report(report, as_json, options.quiet))


@cli.command()
@click.argument("node", required=False)
@click.option("--json", "as_json", is_flag=True, help="Stable JSON: a list of node objects.")
@click.pass_obj
@handle_errors
def status(options: Options, node: str | None, as_json: bool) -> None:
    """State, step in progress, gate waited on, last error, and why, per node."""
    # Not orchestrator.api: status needs the journal only, not the engine or the logs (start-up, #11).
    from orchestrator._journal_api import status as node_status
    from orchestrator._session import open_existing_journal

    with open_existing_journal(options.session(allow_version_change=True), readonly=True) as journal:
        rows = node_status(journal, node)
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

    settings = options.session(actor=by, allow_version_change=True)
    with api.open_existing_journal(settings) as journal:
        result = api.approve(journal, node, gate, by=by, reason=reason, settings=settings)
    if result["already_open"]:
        click.echo(
            f"{gate} of {node} is already open (approved by {result['by']}, journal seq {result['seq']}); nothing recorded"
        )
        return
    click.echo(
        f"approved {gate} for {node} by {by} (journal seq {result['seq']}); continue with `orchestrator resume {node}`"
    )


@cli.group()
def cert() -> None:
    """Certificates from the CA."""


@cert.command("import")
@click.argument("node")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", default=None, help="Who imports it (name or ID), for the audit record. Default: $USER.")
@click.pass_obj
@handle_errors
def cert_import(options: Options, node: str, file: Path, by: str | None) -> None:
    """The CA's signed certificate for NODE's pending CSR, checked first (key, chain, validity, FQDN, usages)."""
    from orchestrator import api

    by = by or os.environ.get("USER") or "operator"
    settings = options.session(actor=by, allow_version_change=True)
    with api.open_existing_journal(settings) as journal:
        result = api.cert_import(journal, node, file, by=by, settings=settings)
    click.echo(
        f"certificate {result['subject']} recorded for {node} by {by}; continue with `orchestrator resume {node}`"
    )


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
    # A process running the node reads the journal before each step: it stops there, or goes on.
    click.echo(
        f"{node}: maintenance {mode}"
        + (" (a running orchestrator stops it before its next step)" if mode == "on" else "")
    )


@cli.group("journal")
def journal_group() -> None:
    """The audit record: export it, verify it, the public key that proves it."""


@journal_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--node", default=None, help="Only this node's events.")
@click.option("--since", default=None, metavar="TIME", help="ISO-8601 time (UTC if no zone): events at or after it.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File (default: stdout), replaced atomically, 0600.",
)
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
            f"{result.what}: VERIFIED: {report.events} events checked, signed up to seq {report.signed_seq}; key: {result.key}"
        )
        return
    if report.status == "UNVERIFIED" and report.ok:
        why = (
            "no trusted public key: pass --public-key PEM" if result.key is None else f"nothing signed by {result.key}"
        )
        click.echo(f"{result.what}: UNVERIFIED ({why})", err=True)
    else:
        click.echo(
            f"{result.what}: {report.status}: INTEGRITY CHECK FAILED ({len(report.problems)} problem(s)); key: {result.key}",
            err=True,
        )
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
    "--json", "as_json", is_flag=True, help="Each simulator's url, user, password (lab only), ca_file; and config."
)
@handle_errors
def lab_status(lab_dir: Path, as_json: bool) -> None:
    """Where the simulators listen and the configuration that `run` uses against them."""
    from orchestrator.lab import lab_status as st

    _format.lab(st(lab_dir), as_json, lab_dir)


_add_global_options(cli, [p for p in cli.params if p.name in _GLOBAL])
_help.apply(cli)


def main() -> None:
    cli(prog_name="orchestrator")


if __name__ == "__main__":
    main()
