"""Timestamps as the journal stores them: ISO-8601 UTC, microseconds, a 'Z'.

One fixed width format, so text comparison in SQL orders the same as time.
"""

from __future__ import annotations

import datetime as _dt
import time

__all__ = ["utc_now", "format_utc", "parse_utc", "normalize_since"]

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_UTC = _dt.UTC


def format_utc(moment: _dt.datetime) -> str:
    """Format an aware datetime (naive ones are taken as UTC) the journal's way."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    return moment.astimezone(_UTC).strftime(_FORMAT)


_second_cache: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """Now, the journal's way."""
    global _second_cache
    micros = time.time_ns() // 1000
    second, fraction = divmod(micros, 1_000_000)
    cached_second, prefix = _second_cache
    if second != cached_second:
        # strftime costs more than the rest of this function; once a second is enough.
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_cache = (second, prefix)
    return f"{prefix}.{fraction:06d}Z"


def parse_utc(text: str) -> _dt.datetime:
    """Parse a journal timestamp (or any ISO-8601 time) to an aware datetime."""
    moment = _dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_UTC)


def normalize_since(since: _dt.datetime | _dt.date | str | None) -> str | None:
    """A ``since`` filter as a journal timestamp; naive times are UTC.

    Raises:
        ValueError: ``since`` is a string that is not an ISO-8601 date or time.
    """
    if since is None:
        return None
    if isinstance(since, str):
        try:
            since = _dt.datetime.fromisoformat(since.strip())
        except ValueError as exc:
            raise ValueError(f"since: {since!r} is not an ISO-8601 time; use e.g. 2024-05-01T12:00:00Z") from exc
    if not isinstance(since, _dt.datetime):
        since = _dt.datetime(since.year, since.month, since.day)
    return format_utc(since)
