"""The HTTP API, Prometheus metrics and status page (issue #10, part 3): ``make_app``."""

from __future__ import annotations

from orchestrator.http._app import make_app
from orchestrator.http._serve import serve

__all__ = ["make_app", "serve"]
