"""The building blocks of the simulated Management API's schema: a field's kind, limits and default,
and a resource with the verbs it allows (the table itself is :mod:`adapters.sim._pexip_schema`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Field", "Resource"]


@dataclass(frozen=True)
class Field:
    """One field of a resource: its kind, limits and default."""

    kind: str  # bool | int | str | enum | ip | uri | uris | strs
    default: Any = None
    lo: int | None = None  # int: minimum; str: minimum length
    hi: int | None = None  # int: maximum; str: maximum length
    choices: tuple[str, ...] = ()
    ref: str = ""  # uri/uris: the resource referred to
    required: bool = False
    write_only: bool = False  # stored as a hash, never returned
    read_only: bool = False
    embed: bool = False  # uris: GET returns the referred objects, not their URIs


def _b(default: bool) -> Field:
    return Field("bool", default)


def _i(lo: int, hi: int, default: int | None = None, required: bool = False) -> Field:
    return Field("int", default, lo=lo, hi=hi, required=required)


def _s(hi: int = 255, default: str = "", *, lo: int = 0, required: bool = False, write_only: bool = False) -> Field:
    return Field("str", default, lo=lo, hi=hi, required=required, write_only=write_only)


def _e(*choices: str, default: str) -> Field:
    return Field("enum", default, choices=choices)


def _uri(ref: str, required: bool = False) -> Field:
    return Field("uri", None, ref=ref, required=required)


def _uris(ref: str, embed: bool = False) -> Field:
    return Field("uris", [], ref=ref, embed=embed)


@dataclass(frozen=True)
class Resource:
    """A configuration resource and the verbs it allows."""

    name: str
    fields: dict[str, Field]
    singleton: bool = False  # GET and PATCH only (global, authentication, management_vm)
    read_only: bool = False  # GET only (permission)
    filtering: tuple[str, ...] = ()  # the fields a list may be filtered on by the server (Tastypie's "filtering")

    def schema(self) -> dict[str, Any]:
        """The ``<resource>/schema/`` document, the part clients read (pexip-api.md section 1: Discovery)."""
        return {
            "fields": {
                name: {
                    "type": f.kind,
                    "default": f.default,
                    "readonly": f.read_only,
                    "nullable": f.kind == "uri" and not f.required,
                    "blank": f.kind == "str" and not f.required,
                    "valid_choices": list(f.choices) or None,
                }
                for name, f in self.fields.items()
            },
            "filtering": {name: ["exact", "icontains", "startswith", "in"] for name in self.filtering},
        }
