"""The ``daemon`` command of ``orchestrator.cli``: the reconciler, its inputs and the HTTP API, as a service."""

from __future__ import annotations

import click

from orchestrator._cli_base import Options, handle_errors

__all__ = ["daemon"]


@click.command()
@click.option(
    "--listen", default=None, metavar="HOST:PORT", help="Where the HTTP API listens (default: [http] listen)."
)
@click.pass_obj
@handle_errors
def daemon(options: Options, listen: str | None) -> None:
    """Drive every node of the deployment file and keep them there, until SIGTERM.

    New [[conferencing]] entries (the file is watched; SIGHUP also reloads it) and VMs of vCenter
    matching vcenter.name_pattern are noticed; a bad edit is refused and logged, the running set
    unchanged. Serves the HTTP API of `serve`; tells systemd READY=1 and pings its watchdog.
    """
    import asyncio  # here, not at the top: --help stays fast

    from orchestrator.daemon import run_daemon

    options.live(as_json=True)  # logs as a service writes them: INFO by default, no live display
    settings = options.session(actor="orchestrator-daemon")
    asyncio.run(run_daemon(settings, listen=listen, ready=lambda url: click.echo(f"daemon ready; serving {url}")))
