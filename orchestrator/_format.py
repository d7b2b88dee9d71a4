"""The command line's output: the library's results as text or the stable ``--json`` shapes.

Kept apart from ``cli.py`` so that the commands stay argument parsing plus one library call.
``rich`` and the display are imported when used: ``orchestrator --help`` stays fast.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from config.model import Deployment
    from journal import Journal
    from orchestrator.api import Plan, Verification
    from orchestrator.display import Progress
    from orchestrator.engine import RunReport

__all__ = [
    "report",
    "recap_lines",
    "plan",
    "status",
    "status_table",
    "drift_lines",
    "verification",
    "lab",
    "lab_down",
    "progress",
]

_SUMMARY = {
    0: "done: every node reached its target state",
    1: "a step failed (see above); fix the cause, then `orchestrator resume NODE`",
    3: "waiting on a gate (see above); open it, then `orchestrator resume --all`",
}


def report(result: RunReport, as_json: bool, quiet: bool = False) -> int:
    """Print a run's outcome per node, its recap (not with ``quiet``) and the summary; returns the exit code."""
    code: int = result.exit_code
    if as_json:
        nodes = {n: {"result": type(a).__name__.lower(), "reason": a.reason} for n, a in result.outcomes.items()}
        out: dict[str, Any] = {"exit_code": code, "nodes": nodes}
        if result.recap is not None:
            out["recap"] = result.recap
        click.echo(json.dumps(out, indent=2))
        return code
    for node, action in result.outcomes.items():
        if type(action).__name__ != "Done":
            click.echo(f"{node}: {type(action).__name__.lower()}: {action.reason}")
    if result.recap is not None and not quiet:
        for line in recap_lines(result.recap):
            click.echo(line)
    click.echo(_summary(result))
    return code


def _summary(result: RunReport) -> str:
    """The last line: it matches the outcome (an interrupted run says so, not "a step failed").

    When blocked nodes are all that is left (no node of the run failed or waits on a gate), the
    line names what they wait for and what lets them go on.
    """
    if result.interrupted:
        return "interrupted: the steps in flight finished or stay journaled; continue with `orchestrator resume --all`"
    ended = {type(a).__name__ for a in result.outcomes.values()}
    if result.blocked and not ended & {"Stopped", "Wait", "Held"}:
        return _blocked_summary(result)
    if "Held" in ended and not ended & {"Stopped", "Wait"}:
        return "in maintenance (see above): `orchestrator maintenance NODE off --by WHO`, then run again"
    failed = [n for n, a in result.outcomes.items() if type(a).__name__ == "Stopped"]
    if failed:  # the nodes to resume, by name
        if len(failed) == 1:
            return f"a step failed on {failed[0]} (see above); fix the cause, then `orchestrator resume {failed[0]}`"
        return f"a step failed on {len(failed)} nodes ({_some(failed)}); fix each, then `orchestrator resume NODE`"
    waiting = [(n, a) for n, a in result.outcomes.items() if type(a).__name__ == "Wait"]
    if len(waiting) == 1:  # its gate and the command that opens it
        return f"waiting on a gate: {waiting[0][0]} is {waiting[0][1].reason}; then `orchestrator resume --all`"
    if waiting:
        names = [n for n, _ in waiting]
        how = "open each (see above), then `orchestrator resume --all`"
        return f"waiting on a gate: {len(names)} nodes ({_some(names)}); {how}"
    return _SUMMARY.get(result.exit_code, "")


def _blocked_summary(result: RunReport) -> str:
    names = result.blocked
    who = names[0] + " waits" if len(names) == 1 else f"{len(names)} nodes wait ({_some(names)})"
    if result.blocked_by is None:
        return f"blocked: {who} for another node; see `orchestrator status`"
    manager, action = result.blocked_by
    kind = type(action).__name__
    if kind == "Stopped":
        return f"blocked: {who} for {manager}, which failed; fix the cause, then `orchestrator resume {manager}`"
    if kind == "Wait":
        return f"blocked: {who} for {manager}, which is {action.reason}; then `orchestrator resume --all`"
    if kind == "Held":
        return f"blocked: {who} for {manager}, in maintenance: `orchestrator maintenance {manager} off --by WHO`"
    return (
        f"blocked: {who} for {manager}, which this run did not drive far enough (see above); "
        f"drive it first: `orchestrator run {manager}`, then run them again"
    )


def _some(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def recap_lines(recap: dict[str, Any]) -> list[str]:
    """The recap as text: one line per node (names in full), then the totals and the wall time."""
    nodes = recap["nodes"]
    width = max((len(n) for n in nodes), default=4)
    lines = ["", "RECAP " + "*" * max(width - 5, 10)]
    for name, c in nodes.items():
        counts = "  ".join(f"{key}={c[key]}" for key in ("ok", "changed", "retried", "waiting", "failed"))
        lines.append(f"{name:<{width}} : {counts}  {c['duration_s']:.1f}s")
    t = recap["totals"]
    lines.append(
        f"{len(nodes)} node(s): {t['changed']} step(s) changed, {t['ok']} ok, {t['retried']} retried, "
        f"{t['waiting']} waiting, {t['failed']} failed in {recap['wall_s']:.1f}s"
    )
    return lines


def plan(result: Plan, as_json: bool, saved_to: Any = None) -> None:
    """Print a dry run's plan (``_format_plan``), or its stable JSON; say where it was saved (on stderr with --json)."""
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2, default=str))
    else:
        from orchestrator._format_plan import plan_lines

        for line in plan_lines(result):
            click.echo(line)
    if saved_to is not None:
        click.echo(
            f"Saved the plan to {saved_to}; apply exactly it with `orchestrator run --plan {saved_to}`", err=as_json
        )


def status(journal_path: str, rows: list[dict[str, Any]], as_json: bool) -> None:
    """Print where each node stands: a table, or ``{"journal", "nodes"}``."""
    if as_json:
        click.echo(json.dumps({"journal": journal_path, "nodes": rows}, indent=2))
        return
    from rich.console import Console

    console = Console()
    console.print(status_table(journal_path, rows, width=console.width))
    for line in [*not_settable_lines(rows), *drift_lines(rows)]:
        click.echo(line)


def not_settable_lines(rows: list[dict[str, Any]]) -> list[str]:
    """``status NODE``: the settings this Manager's version could not take, per step (pexip-api.md 7.9)."""
    return [
        f"{r['node']}: {step}: {', '.join(settings)}: not settable on this version (left out of the write)"
        for r in rows
        for step, settings in (r.get("not_settable") or {}).items()
    ]


def drift_lines(rows: list[dict[str, Any]]) -> list[str]:
    """``status --refresh``: per node, what its completed steps observe now (nothing without ``drift``)."""
    lines = []
    for r in rows:
        if "drift" not in r:
            continue
        if not r["drift"]:
            lines.append(f"{r['node']}: no drift")
        for d in r["drift"]:
            what = "; ".join(f"{c['field']}: {c['now']!r} -> {c['wanted']!r}" for c in d["changes"]) or d.get("reason")
            action = "run re-applies it" if d["reversible"] else "run fails the node"
            lines.append(f"{r['node']}: {d['status']} in {d['step']} ({action}): {what}")
    return lines


def _age(updated_at: str | None, now: datetime | None = None) -> str:
    """``updated_at`` (ISO-8601) as time ago: ``42s``, ``5m``, ``3h``, ``2d``."""
    if not updated_at:
        return ""
    try:
        then = datetime.fromisoformat(updated_at)
    except ValueError:
        return ""
    then = then if then.tzinfo else then.replace(tzinfo=UTC)
    seconds = max(((now or datetime.now(UTC)) - then).total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def status_table(journal_path: str, rows: list[dict[str, Any]], *, width: int = 80, now: datetime | None = None) -> Any:
    """The status table: node names never cut; below 120 columns the rest folds into one column per node.

    Every cell is a :class:`rich.text.Text`, never markup: a reason, a maintenance note or a path
    holding ``[red]`` or ``[/]`` is shown as written (as markup it vanished, or made rich raise).
    """
    from rich.table import Table
    from rich.text import Text

    longest = max((len(r["node"]) for r in rows), default=4)
    wide = width >= 120
    table = Table(title=Text(f"journal {journal_path}", style="table.title"), expand=False, show_lines=not wide)
    table.add_column("node", no_wrap=True, min_width=longest)
    if wide:
        for col in ("role", "state", "step", "gate", "lease", "age"):
            table.add_column(col, overflow="fold")
        table.add_column("next / why", overflow="fold", ratio=1)
    else:
        table.add_column("state (role, step, gate, lease, age) / next, why", overflow="fold", ratio=1)
    for r in rows:
        why = r["next"]["reason"]
        if r["maintenance"]:
            why = f"maintenance: {r['maintenance_reason'] or ''}"
        lease = r.get("lease")
        cells = [
            r["role"],
            r["state"],
            r["step"] or "",
            r["gate"] or "",
            f"pid {lease['pid']}" if lease else "",
            _age(r.get("updated_at"), now),
        ]
        if wide:
            table.add_row(Text(r["node"]), *map(Text, cells), Text(why))
        else:
            role, state, step, gate, held, age = cells
            labelled = [
                state,
                role,
                f"step {step}" if step else "",
                f"gate {gate}" if gate else "",
                f"lease {held}" if held else "",
                f"{age} ago" if age else "",
            ]
            table.add_row(Text(r["node"]), Text(" · ".join(c for c in labelled if c) + "\n" + why))
    return table


def verification(result: Verification) -> bool:
    """Print an integrity check's problems and verdict; returns whether it passed."""
    checked = result.report
    for line in checked.problems:
        click.echo(line, err=True)
    if not checked.ok:
        click.echo(f"{result.what}: INTEGRITY CHECK FAILED ({len(checked.problems)} problem(s))", err=True)
        return False
    sealed = {True: "seal verified", False: "seal INVALID", None: "seal not checked (no key)"}[checked.sealed]
    click.echo(f"{result.what}: ok, {checked.events} events, chain intact, {sealed}")
    return True


def lab(result: dict[str, Any], as_json: bool, lab_dir: Any = ".lab") -> None:
    """Print where the lab's simulators listen and the configuration for them (or how to start a lab)."""
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if result.get("config") is None:
        where = "" if str(lab_dir) == ".lab" else f" --dir {lab_dir}"
        click.echo(f"no lab in {lab_dir}; start one with `orchestrator lab up{where}`")
        return
    for name, sim in result.items():
        if isinstance(sim, dict) and "url" in sim:
            running = "" if sim.get("running", True) else " [not running]"
            key = sim.get("host_key_fingerprint")
            trust = f"host key {key}" if "host_key_fingerprint" in sim else f"ca {sim.get('ca_file')}"
            click.echo(f"{name}: {sim.get('url')} ({trust})" + running)
        elif isinstance(sim, dict):  # provisioning: one interface per Conferencing Node
            for node, url in sim.items():
                click.echo(f"{name} {node}: {url}")
    click.echo(f"config: {result.get('config')}  (run with: orchestrator -c {result.get('config')} run)")


def lab_down(result: dict[str, Any], as_json: bool) -> None:
    """Print what ``lab down`` stopped and removed."""
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo("lab stopped" if result["stopped"] else f"no lab running in {result['dir']}")
    for path in result["removed"]:
        click.echo(f"removed {path}")


def progress(deployment: Deployment, journal: Journal, live: bool | None = None) -> Progress:
    """The live display of a run, starting from the states the journal holds."""
    from orchestrator.display import Progress

    states = {r.name: r.state for r in journal.nodes()} or {n.name: "new" for n in deployment.nodes}
    for n in deployment.nodes:
        states.setdefault(n.name, "new")

    def errors(node: str) -> tuple[int, str | None]:
        record = journal.node(node)
        return (record.attempt, record.last_error) if record else (0, None)

    return Progress(
        [(n.name, n.role) for n in deployment.nodes],
        states,
        live=live,
        errors=errors,
        max_attempts=deployment.policy.retry.max_attempts,
    )
