"""The configuration commands of ``orchestrator.cli``: ``validate``."""

from __future__ import annotations

import json
import sys

import click

from orchestrator._cli_base import EXIT_BAD_INPUT, Options, handle_errors

__all__ = ["validate"]


@click.command("validate")
@click.option("--offline", is_flag=True, help="Skip what needs this host: secrets set, files the real systems open.")
@click.option("--json", "as_json", is_flag=True, help="Print {config, valid, offline, deployment, nodes, problems}.")
@click.pass_obj
@handle_errors
def validate(options: Options, offline: bool, as_json: bool) -> None:
    """Check the whole configuration in one pass and list every problem; creates and changes nothing."""
    from orchestrator import api

    result = api.validate(options.session(), offline=offline)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2, sort_keys=True))
    elif result.ok:
        scope = " (offline: secrets and host files not checked)" if offline else ""
        click.echo(f"{result.config}: valid: deployment {result.deployment}, {result.nodes} nodes{scope}")
    else:
        click.echo(f"{result.config}: {len(result.problems)} problem(s):", err=True)
        for f, m in result.problems:
            click.echo(f"  {f}: {m}" if f else f"  {m}", err=True)
    if not result.ok:
        sys.exit(EXIT_BAD_INPUT)
