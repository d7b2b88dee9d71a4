"""The list filters of the simulated Management API: ``FIELD``, ``FIELD__icontains``, ``FIELD__startswith`` and
``FIELD__in`` (pexip-api.md 1), checked against the resource's readable fields, then matched against objects."""

from __future__ import annotations

from typing import Any

from adapters.sim._pexip_fields import Resource
from adapters.sim._pexip_schema import api_error

__all__ = ["Test", "matches_all", "parse_filters"]

Test = tuple[str, str, Any]  # (field, operator: "" for equality, wanted value)


def parse_filters(resource: str, spec: Resource, filters: dict[str, Any]) -> list[Test]:
    """``filters`` as tests, or a 400 naming the unknown field or the unsupported form."""
    tests: list[Test] = []
    for name, wanted in filters.items():
        field, _, op = name.partition("__")
        known = field == "id" or (field in spec.fields and not spec.fields[field].write_only)
        if not known:
            readable = sorted(f for f, s in spec.fields.items() if not s.write_only)
            raise api_error(400, f"{resource}: 400 cannot filter on {name!r}; filter on one of {', '.join(readable)}")
        if op not in ("", "icontains", "startswith", "in"):
            raise api_error(
                400,
                f"{resource}: 400 filter {name!r}: supported forms are FIELD, "
                "FIELD__icontains, FIELD__startswith, FIELD__in",
            )
        tests.append((field, op, wanted))
    return tests


def matches_all(obj: dict[str, Any], tests: list[Test]) -> bool:
    return all(_matches(obj.get(field), op, wanted) for field, op, wanted in tests)


def _matches(value: Any, op: str, wanted: Any) -> bool:
    if op == "":
        if isinstance(value, int) and isinstance(wanted, str) and wanted.isdigit():
            return value == int(wanted)
        return bool(value == wanted)
    if op == "in":
        return value in wanted
    if not isinstance(value, str):
        return False
    if op == "icontains":
        return str(wanted).lower() in value.lower()
    return value.startswith(str(wanted))
