"""The ``serve`` command of ``orchestrator.cli``: the HTTP API, metrics and status page."""

from __future__ import annotations

import click

from orchestrator._cli_base import Options, handle_errors

__all__ = ["serve"]


@click.command()
@click.option("--listen", default=None, metavar="HOST:PORT", help="Where to listen (default: [http] listen).")
@click.pass_obj
@handle_errors
def serve(options: Options, listen: str | None) -> None:
    """The HTTP API, /metrics and a status page over the journal, until Ctrl-C."""
    from orchestrator.http import serve as serve_http

    serve_http(options.session(allow_version_change=True), listen, ready=lambda url: click.echo(f"serving {url}"))
