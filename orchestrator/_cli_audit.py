"""The ``audit`` command of ``orchestrator.cli``: the live compliance report, one result per control and node."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from orchestrator._cli_base import EXIT_FAILED, EXIT_OK, Options, handle_errors, output_option

__all__ = ["audit"]


@click.command()
@click.argument("nodes", nargs=-1)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
    help="text: a table; json: the stable shape; html: one self-contained page.",
)
@output_option("Write the report to FILE (replaced atomically) instead of printing it.")
@click.pass_obj
@handle_errors
def audit(options: Options, nodes: tuple[str, ...], fmt: str, output: Path | None) -> None:
    """Check every control of the guide on NODEs (default: all), read live; the report's SHA-256 is journaled."""
    import asyncio

    from orchestrator import api

    options.live(as_json=True)  # no live display: the report is the output
    result = asyncio.run(api.audit(options.session(allow_version_change=True), nodes=nodes, fmt=fmt, output=output))
    summary = result.report.summary
    line = (
        f"audit: {summary['pass']} pass, {summary['fail']} fail, {summary['error']} error, "
        f"{summary['not_settable']} not settable, {summary['not_applicable']} not applicable; "
        f"sha256 {result.sha256} journaled (seq {result.seq})"
    )
    if output is None:
        click.echo(result.text, nl=False)
        click.echo(line, err=True)
    else:
        click.echo(f"{line}; written to {output}")
    sys.exit(EXIT_OK if result.report.passed else EXIT_FAILED)
