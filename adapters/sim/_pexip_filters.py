"""The list filters of the simulated Management API: ``FIELD``, ``FIELD__icontains``, ``FIELD__startswith`` and
``FIELD__in`` (pexip-api.md 1), checked against the resource's readable fields, then matched against objects."""

from __future__ import annotations

from typing import Any

from adapters.sim._pexip_fields import Resource
from adapters.sim._pexip_schema import api_error

__all__ = ["Test", "matches_all", "parse_filters"]

Test = tuple[str, str, Any]  # (field, operator: "" for equality, wanted value)


# (resource, filter name) -> (field, operator) of every name already accepted: the names a client filters on are
# few and asked again on every list (issue #11: 28,000 lists per 1000 nodes). Only valid names are kept, so it
# stays as small as the schema; a refused name is checked (and refused) again each time.
_ACCEPTED: dict[tuple[str, str], tuple[str, str]] = {}


def parse_filters(resource: str, spec: Resource, filters: dict[str, Any]) -> list[Test]:
    """``filters`` as tests, or a 400 naming the unknown field or the unsupported form."""
    tests: list[Test] = []
    for name, wanted in filters.items():
        form = _ACCEPTED.get((resource, name))
        if form is None:
            form = _ACCEPTED[(resource, name)] = _form(resource, spec, name)
        tests.append((*form, wanted))
    return tests


def _form(resource: str, spec: Resource, name: str) -> tuple[str, str]:
    """``(field, operator)`` of the filter ``name``, or a 400 naming the unknown field or the unsupported form."""
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
    return field, op


def matches_all(obj: dict[str, Any], tests: list[Test]) -> bool:
    for field, op, wanted in tests:  # a loop, not all() over a generator: most lists have one test
        if not _matches(obj.get(field), op, wanted):
            return False
    return True


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
