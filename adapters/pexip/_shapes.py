"""What the client makes of a Manager's answers before the steps see them (pure functions), and
its request budget.

- Filters (pexip-api.md 7.6): the server filters only on the fields its ``/schema/`` declares
  under ``filtering`` and refuses the others; the client sends those, filters the rest itself, and
  re-checks every filter on what comes back, so a server that ignores one can never widen a match.
- Embedded foreign keys (7.8): an embedded object without ``resource_uri`` gets the URI rebuilt
  from its ``id``, as Pexip's Terraform provider does, so the steps compare URIs either way.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

__all__ = ["RequestBudget", "server_filters", "matches", "normalise"]

_CONFIG = "/api/admin/configuration/v1/"
_OPS = ("", "icontains", "startswith", "in")
# The fields whose GET embeds the referred objects, and the resource they refer to (pexip-api.md 1: References).
_EMBEDDED = {
    "permissions": "permission",
    "dns_servers": "dns_server",
    "ntp_servers": "ntp_server",
    "syslog_servers": "syslog_server",
}


def server_filters(schema: dict[str, Any] | None, filters: dict[str, Any]) -> dict[str, str]:
    """The part of ``filters`` the server declares it can apply (``schema`` None: unknown, send none but id)."""
    declared = set((schema or {}).get("filtering") or ()) | {"id"}
    out = {}
    for name, wanted in filters.items():
        field, _, op = name.partition("__")
        if field in declared and op in _OPS and isinstance(wanted, (str, int, bool)):
            out[name] = _wire(wanted)
    return out


def matches(obj: dict[str, Any], filters: dict[str, Any]) -> bool:
    """Whether ``obj`` passes every filter (``FIELD``, ``FIELD__icontains``, ``__startswith``, ``__in``)."""
    for name, wanted in filters.items():
        field, _, op = name.partition("__")
        value = obj.get(field)
        if op == "":
            if _wire(value) != _wire(wanted):
                return False
        elif op == "in":
            choices = wanted.split(",") if isinstance(wanted, str) else list(wanted)
            if _wire(value) not in {_wire(c) for c in choices}:
                return False
        elif not isinstance(value, str):
            return False
        elif op == "icontains" and str(wanted).lower() not in value.lower():
            return False
        elif op == "startswith" and not value.startswith(str(wanted)):
            return False
    return True


def normalise(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with every embedded object of a known FK field carrying its ``resource_uri``."""
    out = dict(obj)
    for field, resource in _EMBEDDED.items():
        value = out.get(field)
        if isinstance(value, list):
            out[field] = [_with_uri(e, resource) if isinstance(e, dict) else e for e in value]
    return out


def _with_uri(embedded: dict[str, Any], resource: str) -> dict[str, Any]:
    if embedded.get("resource_uri") or embedded.get("id") is None:
        return embedded
    return {**embedded, "resource_uri": f"{_CONFIG}{resource}/{embedded['id']}/"}


def _wire(value: Any) -> str:
    """A value as a query string carries it (Tastypie compares ``?enabled=true`` with a bool)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class RequestBudget:
    """At most ``limit`` requests in any ``window_s`` seconds: :meth:`wait` before each one (a sliding window)."""

    def __init__(self, limit: int, window_s: float):
        self._limit, self._window = limit, window_s
        self._sent: deque[float] = deque()

    async def wait(self) -> None:
        while True:
            now = time.monotonic()
            while self._sent and now - self._sent[0] >= self._window:
                self._sent.popleft()
            if len(self._sent) < self._limit:
                self._sent.append(now)
                return
            await asyncio.sleep(self._window - (now - self._sent[0]))
