"""``serve``: run the HTTP API until interrupted, configured by the deployment's ``[http]`` section."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from aiohttp import web

from config.errors import ConfigError
from config.model import HttpSpec
from orchestrator._session import load_deployment
from orchestrator._settings import SessionSettings, register_secrets
from orchestrator.http._app import make_app

__all__ = ["serve", "split_listen"]


def split_listen(listen: str, field: str = "--listen") -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError([(field, f"not HOST:PORT (got {listen!r}); e.g. 127.0.0.1:8480")])
    return host.strip("[]"), int(port)


async def _run(
    app: web.Application, host: str, port: int, tls: ssl.SSLContext | None, ready: Callable[[str], None]
) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        await site.start()
        bound = runner.addresses[0]
        ready(f"{'https' if tls else 'http'}://{host}:{bound[1]}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def serve(settings: SessionSettings, listen: str | None = None, ready: Callable[[str], None] = print) -> None:
    """Serve until interrupted (Ctrl-C). ``listen`` overrides ``[http] listen``; ``ready`` gets the URL."""
    deployment = load_deployment(settings, required=False, check_secrets=False)
    spec = deployment.http if deployment is not None else HttpSpec()
    if deployment is not None:
        register_secrets(deployment)  # the token's value is redacted from every log line
    host, port = split_listen(listen or spec.listen, "--listen" if listen else "http.listen")
    if spec.token is not None and (missing := spec.token.available()) is not None:
        raise ConfigError([("http.token", f"secret cannot be read (got {spec.token.ref}: {missing}); set it")])
    tls = None
    if spec.tls_cert and spec.tls_key:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(spec.tls_cert, spec.tls_key)
    try:
        asyncio.run(_run(make_app(settings, token=spec.token), host, port, tls, ready))
    except KeyboardInterrupt:
        pass
