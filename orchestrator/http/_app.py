"""``make_app``: aiohttp routes over the same library functions the CLI calls (never its own journal access)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from config.errors import ConfigError, OrchestratorError
from config.secrets import Secret
from orchestrator import _journal_api
from orchestrator._session import open_existing_journal
from orchestrator._settings import SessionSettings
from orchestrator.http import _metrics, _page

__all__ = ["make_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _bad_input(exc: ConfigError) -> web.Response:
    return _error(400, str(exc))


def make_app(settings: SessionSettings, *, token: Secret | None = None, refresh_s: int = 10) -> web.Application:
    """The API: /healthz /readyz /metrics /api/nodes[/{name}], POST approvals (bearer ``token``), / page.

    Without ``token`` every POST is refused (401): the API is then read-only.
    """

    def rows(node: str | None = None, not_settable: bool | None = None) -> tuple[str, list[dict[str, Any]]]:
        with open_existing_journal(settings, readonly=True) as journal:
            found = _journal_api.status(journal, node, not_settable=not_settable)
            return str(journal.path), found

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        try:
            rows()
        except (OrchestratorError, OSError) as exc:
            return _error(503, f"journal not readable: {exc}")
        return web.json_response({"ready": True})

    async def metrics(_: web.Request) -> web.Response:
        with open_existing_journal(settings, readonly=True) as journal:
            text = _metrics.render(journal, _journal_api.status(journal))
        return web.Response(body=text, content_type="text/plain", charset="utf-8", headers={"X-Format": "0.0.4"})

    async def nodes(_: web.Request) -> web.Response:
        path, found = rows(not_settable=True)  # the `status --json` objects
        return web.json_response({"journal": path, "nodes": found})

    async def node(request: web.Request) -> web.Response:
        try:
            _, found = rows(request.match_info["name"])
        except ConfigError as exc:
            return _error(404, str(exc))
        return web.json_response(found[0])

    def identity(request: web.Request) -> str | None:
        if token is None:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.reveal().encode()):
            return None
        return f"http-token:{token.ref}"

    async def approve(request: web.Request) -> web.Response:
        who = identity(request)
        if who is None:
            return web.json_response(
                {"error": "unauthorized: send Authorization: Bearer <token>"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            body = json.loads(await request.text() or "{}")
        except json.JSONDecodeError:
            return _error(400, 'body: send JSON {"gate": ..., "reason": ...}')
        if not isinstance(body, dict) or not isinstance(body.get("gate"), str):
            return _error(400, 'gate: send JSON {"gate": "security_wizard", "reason": "CHG-42"}')
        reason = body.get("reason")
        try:
            with open_existing_journal(settings) as journal:
                result = _journal_api.approve(
                    journal,
                    request.match_info["name"],
                    body["gate"],
                    by=who,
                    reason=str(reason) if reason is not None else None,
                    settings=settings,
                )
        except ConfigError as exc:
            return _bad_input(exc)
        except OrchestratorError as exc:  # an unverified or locked journal: nothing was approved
            return _error(409, f"nothing was approved: {exc}")
        return web.json_response(result, status=200 if result["already_open"] else 201)

    async def page(_: web.Request) -> web.Response:
        path, found = rows()
        return web.Response(text=_page.render(path, found, refresh_s), content_type="text/html")

    app = web.Application()
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
            web.get("/api/nodes", nodes),
            web.get("/api/nodes/{name}", node),
            web.post("/api/nodes/{name}/approvals", approve),
            web.get("/", page),
        ]
    )
    return app
