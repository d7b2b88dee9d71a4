"""The keys of the orchestrator's custom fields (custom attributes) on vCenter, defined on first use."""

from __future__ import annotations

import asyncio
from typing import Any

from pyVmomi import vim, vmodl

from adapters.vsphere._reads import VmReader
from adapters.vsphere._session import Session
from adapters.vsphere._vm_records import props, retrieve

__all__ = ["FieldKeys"]

PC = vmodl.query.PropertyCollector


class FieldKeys:
    """Custom field name -> key, per vCenter login."""

    def __init__(self, session: Session, reads: VmReader) -> None:
        self._session = session
        self._reads = reads
        self._lock: asyncio.Lock | None = None
        self._keys: dict[str, tuple[int, int]] = {}  # custom field name -> (key, session generation)

    def forget(self, name: str) -> None:
        """The field may be gone (a ``SetField`` failed): read its key again next time."""
        self._keys.pop(name, None)

    async def key(self, name: str) -> int:
        """The key of our custom field ``name``, defined on first use.

        Taken from the latest read of the VMs under the same login, however old: a field's
        key never changes, and a vCenter that lost its state (and could give the key to
        another field) also forgot the session. A field removed since makes ``SetField``
        fail, which drops the key (``import_ova``)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            generation = self._session.generation
            key, known = self._keys.get(name, (0, -1))
            if known == generation:
                return key
            last = self._reads.last_briefs
            if last is not None and last.generation == generation and name in last.fields:
                self._keys[name] = (last.fields[name], generation)
                return last.fields[name]

            def define(content: Any) -> tuple[int, bool]:
                """The key, and whether this call made the field (else another did: VMs may carry it)."""
                try:
                    made = content.customFieldsManager.AddCustomFieldDef(name=name, moType=vim.VirtualMachine)
                    return int(made.key), True
                except vim.fault.DuplicateName:
                    fields = props(
                        retrieve(
                            content,
                            [PC.ObjectSpec(obj=content.customFieldsManager)],
                            [PC.PropertySpec(type=vim.CustomFieldsManager, pathSet=["field"])],
                        )[0]
                    ).get("field")
                    return next(int(f.key) for f in fields or () if f.name == name), False

            made = False
            try:
                key, made = await self._session.call(f"define custom attribute {name}", define)
            finally:
                if made:
                    self._reads.field_defined(name, key)  # no VM carries a value of it yet
                else:
                    self._reads.changed()  # another made it, or the answer was lost: read every brief again
            self._keys[name] = (key, generation)
            return key
