"""Structured logs (structlog): JSON when stderr is not a terminal, every value redacted.

Every revealed secret is registered with ``config.secrets.REDACTOR``; the last
processor before rendering runs the whole event through it, so a password that
slips into an error message is replaced before it is written anywhere.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from config.secrets import REDACTOR

__all__ = ["configure_logging", "redact"]


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    return {k: REDACTOR.scrub(v, k) for k, v in event.items()}


def configure_logging(level: str = "INFO", *, json: bool | None = None, stream: Any = None) -> None:
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
