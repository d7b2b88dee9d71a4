"""The ``orchestrator`` command: a thin skin over ``orchestrator.api``.

Exit codes (a contract): 0 done; 1 a step failed (or another process holds a node);
2 bad input (the message names the field and the fix); 3 waiting on a gate;
4 the journal failed its integrity check.
"""

from __future__ import annotations

import asyncio
import functools
from contextlib import nullcontext
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from config.errors import ConfigError, DefinitionChanged, IntegrityError, OrchestratorError, ResourceLocked
from machines.lifecycle import LDAP_AUTHENTICATED, MILESTONES

__all__ = ["main", "cli"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_WAITING, EXIT_INTEGRITY = 0, 1, 2, 3, 4
DEFAULT_CONFIG = "orchestrator.toml"
DEFAULT_JOURNALS = ("orchestrator.journal.sqlite", "simulation.journal.sqlite")


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


class Settings:
    def __init__(self, config: str | None, journal: str | None, log_level: str) -> None:
        self.config_arg = config
        self.journal_arg = journal
        self.log_level = log_level

    def config_path(self, required: bool) -> Path | None:
        path = self.config_arg or os.environ.get("ORCHESTRATOR_CONFIG") or DEFAULT_CONFIG
        if Path(path).is_file():
            return Path(path)
        if required or self.config_arg:
            raise ConfigError(
                [("-c/--config", f"configuration file {path} not found; pass -c FILE, set ORCHESTRATOR_CONFIG, "
                  "or start from config/example.toml (or run `orchestrator lab up` for a local one)")]
            )
        return None

    def deployment(self, required: bool = True) -> Any:
        from config.load import load_deployment

        path = self.config_path(required)
        return load_deployment(path) if path else None

    def journal_path(self, deployment: Any = None) -> Path:
        if self.journal_arg:
            return Path(self.journal_arg)
        if os.environ.get("ORCHESTRATOR_JOURNAL"):
            return Path(os.environ["ORCHESTRATOR_JOURNAL"])
        if deployment is not None:
            p = Path(deployment.journal.path)
            return p if p.is_absolute() or not deployment.source else Path(deployment.source).parent / p
        for candidate in DEFAULT_JOURNALS:
            if Path(candidate).exists():
                return Path(candidate)
        return Path(DEFAULT_JOURNALS[0])

    def existing_journal(self, deployment: Any = None) -> Path:
        if deployment is None and not self.journal_arg and not os.environ.get("ORCHESTRATOR_JOURNAL"):
            # The config names the journal; reading it needs no secret.
            from config.load import load_deployment

            path = self.config_path(required=False)
            deployment = load_deployment(path, check_secrets=False) if path else None
        path = self.journal_path(deployment)
        if not path.exists():
            raise ConfigError([("--journal", f"journal {path} does not exist; pass --journal FILE (nothing has run with it yet?)")])
        return path


def _setup_logging(settings: Settings, live: bool) -> None:
    from orchestrator.logs import configure_logging

    level = settings.log_level or ("WARNING" if live else "INFO")
    configure_logging(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config", metavar="FILE", help="Deployment file (TOML). Default: $ORCHESTRATOR_CONFIG, else ./orchestrator.toml.")
@click.option("--journal", metavar="FILE", help="Journal (SQLite). Default: $ORCHESTRATOR_JOURNAL, the config's journal.path, else ./orchestrator.journal.sqlite.")
@click.option("--log-level", default="", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR (default: WARNING with the live display, else INFO).")
@click.pass_context
def cli(ctx: click.Context, config: str | None, journal: str | None, log_level: str) -> None:
    """Drive a Pexip Infinity deployment through the Secure Mode Deployment Guide."""
    ctx.obj = Settings(config, journal, log_level)


def _print_report(report: Any, as_json: bool) -> int:
    code = report.exit_code
    if as_json:
        click.echo(json.dumps({"exit_code": code, "nodes": {n: {"result": type(a).__name__.lower(), "reason": a.reason} for n, a in report.outcomes.items()}}, indent=2))
        return code
    for node, action in report.outcomes.items():
        if type(action).__name__ != "Done":
            click.echo(f"{node}: {type(action).__name__.lower()}: {action.reason}")
    summary = {0: "done: every node reached its target state", 1: "a step failed (see above); fix the cause, then `orchestrator resume NODE`", 3: "waiting on a gate (see above); open it, then `orchestrator resume --all`"}
    click.echo(summary.get(code, ""))
    return code


def _progress(deployment: Any, journal: Any, live: bool | None = None) -> Any:
    from orchestrator.display import Progress

    states = {r.name: r.state for r in journal.nodes()} or {n.name: "new" for n in deployment.nodes}
    for n in deployment.nodes:
        states.setdefault(n.name, "new")
    return Progress([(n.name, n.role) for n in deployment.nodes], states, live=live)


@cli.command()
@click.argument("nodes", nargs=-1)
@click.option("--until", type=click.Choice(MILESTONES), default=LDAP_AUTHENTICATED, show_default=True, help="Stop every node at this state.")
@click.option("--dry-run", is_flag=True, help="Read-only plan: per node and step, what would change (field: now -> wanted).")
@click.option("--json", "as_json", is_flag=True, help="Print the result (or the plan) as JSON.")
@click.option("--allow-version-change", is_flag=True, help="Resume a journal written by another lifecycle definition (journaled).")
@click.pass_obj
@handle_errors
def run(settings: Settings, nodes: tuple[str, ...], until: str, dry_run: bool, as_json: bool, allow_version_change: bool) -> None:
    """Drive nodes (default: all) to their target state."""
    from orchestrator import api

    deployment = settings.deployment()
    api.register_secrets(deployment)
    live = sys.stdout.isatty() and not as_json
    _setup_logging(settings, live)
    world = _open_world(deployment)
    try:
        if dry_run:
            path = settings.journal_path(deployment)
            if path.exists():
                with api.open_journal(path, allow_version_change=allow_version_change) as journal:
                    result = asyncio.run(api.plan(deployment, journal, nodes=nodes or None, until=until, world=world))
            else:
                result = asyncio.run(api.plan(deployment, None, nodes=nodes or None, until=until, world=world))
            _print_plan(result, as_json)
            return
        with api.open_journal(settings.journal_path(deployment), allow_version_change=allow_version_change) as journal:
            progress = _progress(deployment, journal, live=live) if not as_json else None
            with progress if progress else nullcontext():
                report = asyncio.run(api.run(deployment, journal, nodes=nodes or None, until=until, world=world, observer=progress, hooks=world))
        sys.exit(_print_report(report, as_json))
    finally:
        if world is not None:
            world.close()


def _open_world(deployment: Any) -> Any:
    from orchestrator.wiring import needs_world

    if not needs_world(deployment):
        return None
    from adapters.sim.world import SimWorld

    sim = deployment.simulation
    path = Path(sim.world)
    if not path.is_absolute() and deployment.source:
        path = Path(deployment.source).parent / path
    return SimWorld.open(path, latency=sim.latency, faults=sim.faults)


def _print_plan(result: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2, default=str))
        return
    for node, rows in result.nodes.items():
        click.echo(f"{node}:")
        if not rows:
            click.echo("  nothing to do")
        for row in rows:
            status = row["status"]
            click.echo(f"  {row['milestone']:<20} {row['step']:<26} {status}" + (f": {row['reason']}" if row.get("reason") else ""))
            for change in row.get("changes", []):
                click.echo(f"      {change['field']}: {change['now']!r} -> {change['wanted']!r}")


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
def simulate(settings: Settings, nodes: int, latency: float, faults: str, world: Path, effects_out: Path | None, fresh: bool, concurrency: int | None, as_json: bool, allow_version_change: bool) -> None:
    """A whole deployment against the simulated world (resumable: run it again after a crash)."""
    from orchestrator import api

    journal = Path(settings.journal_arg) if settings.journal_arg else Path("simulation.journal.sqlite")
    live = sys.stdout.isatty() and not as_json
    _setup_logging(settings, live)
    sim = api.SimulationSettings(nodes=nodes, latency=latency, faults=faults, world=world, journal=journal, effects_out=effects_out, fresh=fresh, max_concurrency=concurrency)
    factory = None if as_json else (lambda deployment, j: _progress(deployment, j, live=live))
    report, _effects = asyncio.run(api.simulate(sim, observer_factory=factory, allow_version_change=allow_version_change))
    sys.exit(_print_report(report, as_json))


@cli.command()
@click.argument("node", required=False)
@click.option("--all", "all_nodes", is_flag=True, help="Every node.")
@click.option("--from-step", metavar="STEP", help="Run again from this step (it observes first: nothing right is redone).")
@click.option("--by", default=None, help="Who resumes (for the journal). Default: $USER.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--allow-version-change", is_flag=True, help="Resume a journal written by another lifecycle definition (journaled).")
@click.pass_obj
@handle_errors
def resume(settings: Settings, node: str | None, all_nodes: bool, from_step: str | None, by: str | None, as_json: bool, allow_version_change: bool) -> None:
    """Continue NODE (or --all) from its last committed state; failed nodes are retried."""
    from orchestrator import api

    if bool(node) == all_nodes:
        raise ConfigError([("NODE", "give one NODE or --all")])
    if from_step and all_nodes:
        raise ConfigError([("--from-step", "goes with one NODE, not --all")])
    actor = by or os.environ.get("USER") or "operator"
    live = sys.stdout.isatty() and not as_json
    _setup_logging(settings, live)
    deployment = settings.deployment(required=False)
    journal_path = settings.existing_journal(deployment)
    world = None
    with api.open_journal(journal_path, allow_version_change=allow_version_change, actor=actor) as journal:
        simulation = journal.get_meta("simulation")
        if deployment is None and simulation:
            deployment, world = _simulated(json.loads(simulation))
        elif deployment is None:
            raise ConfigError([("-c/--config", "this journal is not a simulation's: pass the deployment file with -c FILE")])
        else:
            world = _open_world(deployment)
        api.register_secrets(deployment)
        names = [node] if node else [r.name for r in journal.nodes()]
        failed = [r.name for r in journal.nodes() if r.name in names and (r.state == "failed" or from_step)]
        try:
            progress = _progress(deployment, journal, live=live) if not as_json else None
            with progress if progress else nullcontext():
                report = asyncio.run(
                    api.run(deployment, journal, nodes=names, world=world, observer=progress, hooks=world, retry=failed, from_step=from_step,
                            actor=actor, auto_approve=bool(simulation))
                )
        finally:
            if world is not None:
                world.close()
    sys.exit(_print_report(report, as_json))


def _simulated(meta: dict[str, Any]) -> tuple[Any, Any]:
    """The deployment and world of the simulation a journal records (``simulate`` meta)."""
    from adapters.sim.world import SimWorld
    from config.load import simulated_deployment

    world_path = Path(meta["world"])
    deployment = simulated_deployment(int(meta["nodes"]), Path(f"{world_path}.d"))
    return deployment, SimWorld.open(world_path)


@cli.command()
@click.argument("node", required=False)
@click.option("--json", "as_json", is_flag=True, help="Stable JSON: a list of node objects.")
@click.pass_obj
@handle_errors
def status(settings: Settings, node: str | None, as_json: bool) -> None:
    """State, step in progress, gate waited on, last error, and why, per node."""
    from orchestrator import api

    path = settings.existing_journal()
    with api.open_journal(path, allow_version_change=True) as journal:
        rows = api.status(journal, node)
    if as_json:
        click.echo(json.dumps({"journal": str(path), "nodes": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"journal {path}")
    for col in ("node", "role", "state", "step", "gate", "next / why"):
        table.add_column(col, overflow="fold")
    for r in rows:
        why = r["next"]["reason"]
        if r["maintenance"]:
            why = f"maintenance: {r['maintenance_reason'] or ''}"
        table.add_row(r["node"], r["role"], r["state"], r["step"] or "", r["gate"] or "", why)
    Console(width=max(120, Console().width)).print(table)


@cli.command()
@click.argument("node")
@click.argument("gate")
@click.option("--by", required=True, help="Who approves (name or ID), for the audit record.")
@click.option("--reason", default=None, help="Why (ticket, change number).")
@click.pass_obj
@handle_errors
def approve(settings: Settings, node: str, gate: str, by: str, reason: str | None) -> None:
    """Open an approval GATE of NODE: security_wizard or bios_password. Then resume."""
    from orchestrator import api

    with api.open_journal(settings.existing_journal(), allow_version_change=True, actor=by) as journal:
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
def cert_import(settings: Settings, node: str, file: Path) -> None:
    """The CA's signed certificate for NODE's pending CSR."""
    from orchestrator import api

    with api.open_journal(settings.existing_journal(), allow_version_change=True) as journal:
        result = api.cert_import(journal, node, file)
    click.echo(f"certificate {result['subject']} recorded for {node}; continue with `orchestrator resume {node}`")


@cli.command()
@click.argument("node")
@click.argument("mode", type=click.Choice(["on", "off"]))
@click.option("--by", required=True, help="Who (for the audit record).")
@click.option("--reason", default=None)
@click.pass_obj
@handle_errors
def maintenance(settings: Settings, node: str, mode: str, by: str, reason: str | None) -> None:
    """Stop (on) or restart (off) automation for NODE without losing its place."""
    from orchestrator import api

    with api.open_journal(settings.existing_journal(), allow_version_change=True, actor=by) as journal:
        api.set_maintenance(journal, node, mode == "on", by=by, reason=reason)
    click.echo(f"{node}: maintenance {mode}")


@cli.group("journal")
def journal_group() -> None:
    """The audit record: export it, verify it."""


@journal_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--node", default=None, help="Only this node's events.")
@click.option("--since", default=None, metavar="TIME", help="ISO-8601 time (UTC if no zone): events at or after it.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File (default: stdout).")
@click.pass_obj
@handle_errors
def journal_export(settings: Settings, fmt: str, node: str | None, since: str | None, output: Path | None) -> None:
    """Export the journal with a seal that `journal verify FILE` checks."""
    from journal import Journal

    if since:
        from datetime import datetime

        try:
            datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError([("--since", f"{since!r} is not an ISO-8601 time; e.g. 2026-11-28T10:00:00Z")]) from exc
    path = settings.existing_journal()
    with Journal.open(path) as journal:
        if output:
            with output.open("w", newline="") as out:
                n = journal.export(out, fmt=fmt, node=node, since=since)
            click.echo(f"exported {n} events to {output}", err=True)
        else:
            journal.export(sys.stdout, fmt=fmt, node=node, since=since)


@journal_group.command("verify")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
@handle_errors
def journal_verify(settings: Settings, file: Path | None) -> None:
    """Check the hash chain and seal of the journal, or of an export FILE (exit 4 if broken)."""
    from journal import Journal, verify_export

    if file is not None and not _is_sqlite(file):
        key = _key_for_export(settings)
        report = verify_export(file, key_path=key) if key else verify_export(file)
        what = str(file)
    else:
        path = file or settings.existing_journal()
        with Journal.open(path) as journal:
            report = journal.verify()
        what = str(path)
    for line in report.problems:
        click.echo(line, err=True)
    if not report.ok:
        click.echo(f"{what}: INTEGRITY CHECK FAILED ({len(report.problems)} problem(s))", err=True)
        sys.exit(EXIT_INTEGRITY)
    sealed = {True: "seal verified", False: "seal INVALID", None: "seal not checked (no key)"}[report.sealed]
    click.echo(f"{what}: ok, {report.events} events, chain intact, {sealed}")


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def _key_for_export(settings: Settings) -> Path | None:
    """The seal key of the journal this CLI would use: trust it, not a path written in the export."""
    try:
        path = settings.existing_journal()
    except ConfigError:
        return None
    key = Path(f"{path}.key")
    return key if key.exists() else None


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
    _print_lab(result, as_json)


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

    _print_lab(st(lab_dir), as_json)


def _print_lab(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for name, sim in result.items():
        if isinstance(sim, dict):
            click.echo(f"{name}: {sim.get('url')} (ca {sim.get('ca_file')})" + ("" if sim.get("running", True) else " [not running]"))
    click.echo(f"config: {result.get('config')}  (run with: orchestrator -c {result.get('config')} run)")


def main() -> None:
    cli(prog_name="orchestrator")


if __name__ == "__main__":
    main()
