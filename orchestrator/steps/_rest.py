"""Read, diff, PATCH against the management API by natural key (pexip-api.md section 6).

Foreign keys come back from GET as embedded objects or URIs; both are normalised to
URIs before comparing. Write-only fields (passwords, keys) cannot be read back: they
are sent when an object is created or changed, never diffed.
"""

from __future__ import annotations

from typing import Any

from adapters.base import PexipApi
from config.errors import Rejected
from config.model import NodeSpec
from orchestrator.steps.base import URI, Change, StepContext

__all__ = [
    "load_schema",
    "settable",
    "normalise",
    "field_changes",
    "find_one",
    "ensure_object",
    "singleton",
    "management_vm",
    "worker_vm",
    "node_object",
]


async def load_schema(ctx: StepContext, resource: str) -> None:
    """Read ``<resource>/schema/`` once per step execution (kept in ``ctx.scratch``) for :func:`settable`."""
    key = f"schema:{resource}"
    if key not in ctx.scratch:
        ctx.scratch[key] = await ctx.pexip.get(f"{URI}{resource}/schema/")


def settable(ctx: StepContext, resource: str, prefix: str, wanted: dict[str, Any]) -> dict[str, Any]:
    """The part of ``wanted`` this Manager's version can take: a field its ``/schema/`` does not list, or
    lists as read-only ("deprecated and will be ignored": ``legacy_api_http``, ``ldap_permit_no_tls`` on v41;
    pexip-api.md 7.9: unknown keys in a write are ignored, not refused) is left out and recorded in
    ``ctx.scratch["not_settable"]``, so the step reports it "not settable on this version", never done.
    Without a schema read (:func:`load_schema`), every field is taken."""
    schema = ctx.scratch.get(f"schema:{resource}")
    fields = (schema or {}).get("fields")
    if not isinstance(fields, dict):
        return wanted
    kept: dict[str, Any] = {}
    for name, value in wanted.items():
        field = fields.get(name)
        if field is None or field.get("readonly"):
            skipped = ctx.scratch.setdefault("not_settable", [])
            if f"{prefix}.{name}" not in skipped:
                skipped.append(f"{prefix}.{name}")
        else:
            kept[name] = value
    return kept


def normalise(value: Any) -> Any:
    """Embedded objects become their ``resource_uri``; lists are compared as sorted lists."""
    if isinstance(value, dict) and "resource_uri" in value:
        return value["resource_uri"]
    if isinstance(value, list):
        items = [normalise(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    return value


def field_changes(prefix: str, current: dict[str, Any] | None, wanted: dict[str, Any]) -> list[Change]:
    current = current or {}
    return [
        Change(f"{prefix}.{k}", normalise(current.get(k)), normalise(v))
        for k, v in wanted.items()
        if normalise(current.get(k)) != normalise(v)
    ]


async def find_one(api: PexipApi, resource: str, **key: Any) -> dict[str, Any] | None:
    found = await api.list_objects(resource, **key)
    if len(found) > 1:
        raise Rejected(
            f"{resource}: {len(found)} objects match {key}; expected one. Remove the duplicates in the Administrator "
            "interface"
        )
    return found[0] if found else None


async def ensure_object(
    api: PexipApi,
    resource: str,
    key: dict[str, Any],
    wanted: dict[str, Any],
    write_only: dict[str, Any] | None = None,
) -> str:
    """Create the object or PATCH the keys that differ; return its URI."""
    current = await find_one(api, resource, **key)
    if current is None:
        created = await api.create(resource, {**key, **wanted, **(write_only or {})})
        return created.uri
    diff = {k: v for k, v in wanted.items() if normalise(current.get(k)) != normalise(v)}
    if diff:
        await api.patch(current["resource_uri"], {**diff, **(write_only or {})})
    return str(current["resource_uri"])


async def singleton(api: PexipApi, resource: str) -> dict[str, Any]:
    return await api.get(f"{URI}{resource}/1/")


async def management_vm(api: PexipApi) -> dict[str, Any]:
    """The Management Node's object: the one with primary = true (its id is not always 1)."""
    for vm in await api.list_objects("management_vm"):
        if vm.get("primary"):
            return vm
    raise Rejected("management_vm: no primary Management Node in the API; is the installation wizard done?")


async def worker_vm(api: PexipApi, name: str) -> dict[str, Any] | None:
    return await find_one(api, "worker_vm", name=name)


async def node_object(api: PexipApi, node: NodeSpec) -> dict[str, Any]:
    """The node's own object: ``management_vm`` (primary) or its ``worker_vm``."""
    if node.role == "management":
        return await management_vm(api)
    worker = await worker_vm(api, node.name)
    if worker is None:
        raise Rejected(f"worker_vm {node.name} does not exist on the Management Node")
    return worker
