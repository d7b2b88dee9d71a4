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

import os
import sys
from pathlib import Path

import click

from machines.lifecycle import LDAP_AUTHENTICATED, MILESTONES
from orchestrator import _format, _help
from orchestrator._cli_audit import audit
from orchestrator._cli_base import GLOBAL_OPTIONS, Options, add_global_options, handle_errors
from orchestrator._cli_config import config_group, init, validate
from orchestrator._cli_daemon import daemon
from orchestrator._cli_groups import journal_group, lab
from orchestrator._cli_serve import serve

__all__ = ["main", "cli"]


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
    help=(
        "Journal (SQLite). Default: the config's journal.path, else ./orchestrator.journal.sqlite (simulate: "
        "./simulation.journal.sqlite)."
    ),
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
    "--dry-run",
    is_flag=True,
    help="Read-only plan: per node and step + create / ~ update (now -> wanted) / ? known after an earlier step, "
    "the gates the run stops at, a summary line. Writes nothing (but -o PLAN).",
)
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PLAN",
    help="With --dry-run: save the plan (JSON, bound to the configuration, policy, journal and world) to apply it "
    "with --plan.",
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="PLAN",
    help="Apply exactly this saved plan (its nodes and --until); refused (exit 2) if anything it was made from "
    "changed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result (or the plan) as JSON.")
@click.option(
    "--allow-version-change", is_flag=True, help="Resume a journal written by another lifecycle definition (journaled)."
)
@click.pass_obj
@handle_errors
def run(
    options: Options,
    nodes: tuple[str, ...],
    until: str,
    dry_run: bool,
    out: Path | None,
    plan_file: Path | None,
    as_json: bool,
    allow_version_change: bool,
) -> None:
    """Drive nodes (default: all) to their target state."""
    import asyncio  # here, not at the top: --help and status start without it

    from orchestrator import api

    _check_plan_options(nodes, dry_run, out, plan_file)
    settings = options.session(allow_version_change=allow_version_change)
    live = options.live(as_json)
    if dry_run:
        _format.plan(asyncio.run(api.plan(settings, nodes=nodes or None, until=until, save_to=out)), as_json, out)
        return
    factory = options.display(as_json, live)
    report = asyncio.run(
        api.run(settings, nodes=nodes or None, until=until, observer_factory=factory, plan_file=plan_file)
    )
    sys.exit(_format.report(report, as_json, options.quiet))


def _check_plan_options(nodes: tuple[str, ...], dry_run: bool, out: Path | None, plan_file: Path | None) -> None:
    """-o goes with --dry-run; --plan names its own nodes and --until, and is not a dry run."""
    if out is not None and not dry_run:
        raise click.BadParameter("saves a plan: use it with --dry-run (then apply it with --plan)", param_hint="'-o'")
    if plan_file is None:
        return
    if dry_run:
        raise click.BadParameter("applies a saved plan; a dry run makes one (--dry-run -o PLAN)", param_hint="'--plan'")
    if nodes or click.get_current_context().get_parameter_source("until") is not click.core.ParameterSource.DEFAULT:
        raise click.BadParameter(
            "the plan names its nodes and --until: give neither with --plan (make a new plan to change them)",
            param_hint="'--plan'",
        )


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
@click.option("--refresh", is_flag=True, help="Also observe every completed step, read-only, and show what drifted.")
@click.pass_obj
@handle_errors
def status(options: Options, node: str | None, as_json: bool, refresh: bool) -> None:
    """State, step in progress, gate waited on, last error, and why, per node."""
    if refresh:
        import asyncio  # here, not at the top: plain status starts without it

        from orchestrator._refresh_api import refreshed_status

        path, refreshed = asyncio.run(refreshed_status(options.session(allow_version_change=True), node))
        _format.status(path, refreshed, as_json)
        return
    # Not orchestrator.api: status needs the journal only, not the engine or the logs (start-up, #11).
    from orchestrator._journal_api import status as node_status
    from orchestrator._settings import open_existing_journal

    with open_existing_journal(options.session(allow_version_change=True), readonly=True) as journal:
        rows = node_status(journal, node, not_settable=True if as_json else None)  # the table of all: without
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
            f"{gate} of {node} is already open (approved by {result['by']}, journal seq {result['seq']}); nothing "
            "recorded"
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


@cert.command("renew")
@click.argument("node")
@click.option("--by", default=None, help="Who renews (for the journal). Default: $USER.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
@handle_errors
def cert_renew(options: Options, node: str, by: str | None, as_json: bool) -> None:
    """A renewal CSR from NODE's installed certificate (same key), then its certificate steps again."""
    import asyncio

    from orchestrator import api

    settings = options.session(actor=by or os.environ.get("USER") or "operator", allow_version_change=True)
    factory = options.display(as_json, options.live(as_json))
    sys.exit(
        _format.report(asyncio.run(api.cert_renew(settings, node, observer_factory=factory)), as_json, options.quiet)
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


cli.add_command(journal_group)
cli.add_command(lab)
cli.add_command(validate)
cli.add_command(init)
cli.add_command(config_group)
cli.add_command(serve)
cli.add_command(daemon)
cli.add_command(audit)
add_global_options(cli, [p for p in cli.params if p.name in GLOBAL_OPTIONS])
_help.apply(cli)


def main() -> None:
    cli(prog_name="orchestrator")


if __name__ == "__main__":
    main()
