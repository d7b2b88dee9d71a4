"""The HTTP API, Prometheus metrics and status page (issue #10, part 3): ``make_app``."""

from __future__ import annotations

from orchestrator.http._app import TOKEN_ENV, make_app

__all__ = ["make_app", "TOKEN_ENV"]
