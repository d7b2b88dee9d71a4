"""``orchestrator daemon``: the reconciler, its inputs and the HTTP API in one process, until SIGTERM.

Start-up: the session as ``run`` opens it (the journal verified and bound, the world, the
systems), the preflight, every node's lease (a second daemon, or a ``run``, on the same journal
is refused: exit 1), the HTTP API of ``serve``, then ``READY=1`` to systemd. SIGTERM or SIGINT:
no new step starts, the steps in flight finish and commit (a second signal stops them at once:
each stays started in the journal and is redone from observe by the next start), the leases are
released, ``STOPPING=1``. SIGHUP reads the deployment file again, as a change to it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from config.errors import ConfigError
from orchestrator._session import SessionSettings, open_session
from orchestrator.daemon import _inputs
from orchestrator.daemon._notify import notify, watchdog, watchdog_period
from orchestrator.daemon._reconciler import Observer, Reconciler
from orchestrator.http import make_app
from orchestrator.http._serve import split_listen

__all__ = ["run_daemon"]

log = structlog.get_logger("orchestrator.daemon")


async def _preflight(deployment: Any, systems: Any) -> None:
    from orchestrator._preflight import preflight  # run's own check, one definition

    await preflight(deployment, systems)


async def _serve_http(
    settings: SessionSettings, reconciler: Reconciler, listen: str | None
) -> tuple[web.AppRunner, str]:
    spec = reconciler.deployment.http
    host, port = split_listen(listen or spec.listen, "--listen" if listen else "http.listen")
    if spec.token is not None and (missing := spec.token.available()) is not None:
        raise ConfigError([("http.token", f"secret cannot be read (got {spec.token.ref}: {missing}); set it")])
    tls = None
    if spec.tls_cert and spec.tls_key:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(spec.tls_cert, spec.tls_key)
    # The journal by its path: the API must not read the deployment file, which may hold a refused edit.
    pinned = dataclasses.replace(settings, journal=reconciler.session.journal_path)
    runner = web.AppRunner(make_app(pinned, token=spec.token), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=tls).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            [("--listen" if listen else "http.listen", f"cannot listen on {host}:{port}: {exc}")]
        ) from exc
    bound = runner.addresses[0]
    return runner, f"{'https' if tls else 'http'}://{host}:{bound[1]}"


async def run_daemon(
    settings: SessionSettings,
    *,
    listen: str | None = None,
    ready: Callable[[str], None] = print,
    observer: Observer | None = None,
    started: Callable[[Reconciler], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT. ``ready`` gets the HTTP API's URL once the daemon serves.

    Args:
        listen: HOST:PORT for the HTTP API (default ``[http] listen``; port 0: any free port).
        observer: called after every committed transition (benchmarks, tests).
        started: called with the reconciler once it runs (benchmarks).
        stop: set it to stop as SIGTERM does (the daemon embedded in a test or a benchmark).

    Raises:
        ConfigError: the deployment is refused (exit 2); nothing was changed.
        ResourceLocked: another process holds a node of this journal (exit 1).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    async with open_session(settings) as session:
        reconciler = Reconciler(session, observer=observer, preflight=_preflight)
        await reconciler.start()
        background: list[asyncio.Task[None]] = []
        runner: web.AppRunner | None = None
        hits = {"n": 0}

        def terminate() -> None:
            hits["n"] += 1
            if hits["n"] == 1:
                log.warning("stopping: no new steps start; the steps in flight finish (signal again to stop now)")
                stop.set()
            else:
                reconciler.interrupt()

        def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
            background.append(asyncio.create_task(coro, name=f"daemon:{name}"))

        installed = []
        try:
            for sig, handler in (
                (signal.SIGTERM, terminate),
                (signal.SIGINT, terminate),
                (signal.SIGHUP, lambda: spawn(reconciler.reload("SIGHUP"), "sighup")),  # type: ignore[arg-type]
            ):
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
            runner, url = await _serve_http(settings, reconciler, listen)
            spawn(reconciler.run(), "reconcile")
            spawn(_inputs.heartbeat(reconciler), "heartbeat")
            spawn(_inputs.resync_every(reconciler), "resync")
            spawn(_inputs.watch_inventory(reconciler), "inventory")
            if reconciler.deployment.source:
                spawn(_inputs.watch_config(reconciler, Path(reconciler.deployment.source)), "config")
            if (period := watchdog_period()) is not None:
                spawn(watchdog(period), "watchdog")
            if started is not None:
                started(reconciler)
            log.info("daemon ready", url=url, nodes=len(reconciler.deployment.nodes))
            notify("READY=1")
            ready(url)
            await stop.wait()
            notify("STOPPING=1")
            await reconciler.stop()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if runner is not None:
                await runner.cleanup()
            if not stop.is_set():  # an error on the way up: the leases go back
                await reconciler.stop()
