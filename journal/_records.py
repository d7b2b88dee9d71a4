"""The journal's records: what goes in (:class:`Transition`) and what comes out.

Plain frozen dataclasses, so the engine can pass them around and compare them
without touching SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config.errors import IntegrityError

__all__ = ["Transition", "Event", "NodeRecord", "VerifyReport", "VerifyStatus", "EVENT_COLUMNS", "NODE_COLUMNS"]

# Column order of the `events` table; rows are read and written in this order.
EVENT_COLUMNS = (
    "seq",
    "at",
    "node",
    "kind",
    "step",
    "attempt",
    "key",
    "from_state",
    "to_state",
    "actor",
    "payload",
    "prev_hash",
    "hash",
    "sets",
)

NODE_COLUMNS = (
    "name",
    "role",
    "state",
    "step",
    "attempt",
    "gate",
    "last_error",
    "failed_from",
    "maintenance",
    "maintenance_reason",
    "lease_owner",
    "lease_pid",
    "lease_since",
    "heartbeat",
    "updated_at",
    "last_seq",
)


@dataclass(frozen=True)
class Transition:
    """One durable change: an event for the chain, plus the node-row columns it sets.

    Args:
        node: the node the event is about; ``None`` for a run-level event.
        kind: what happened (``step_started``, ``step_committed``, ``gate_opened``, ...).
        step, attempt, key: the step, its attempt number and its idempotency key.
        from_state, to_state: the lifecycle move; when ``to_state`` is given the node's
            ``state`` becomes it (unless ``update`` sets ``state`` itself).
        actor: who caused it (``orchestrator``, an operator name, ...).
        payload: JSON-like details; secrets are scrubbed before hashing and storing.
        update: node-row columns to set in the same transaction, among ``state``, ``step``,
            ``attempt``, ``gate``, ``last_error``, ``failed_from``, ``maintenance``,
            ``maintenance_reason``.
    """

    node: str | None
    kind: str
    step: str | None = None
    attempt: int = 0
    key: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    actor: str = "orchestrator"
    payload: Mapping[str, Any] = field(default_factory=dict)
    update: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One row of the hash chain, as stored (payload decoded)."""

    seq: int
    at: str
    node: str | None
    kind: str
    step: str | None
    attempt: int
    key: str | None
    from_state: str | None
    to_state: str | None
    actor: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str
    sets: dict[str, Any] = field(default_factory=dict)  # the node-row columns the event set

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Event:
        """Build from an ``events`` row in :data:`EVENT_COLUMNS` order (payload, sets as JSON text)."""
        values = list(row)
        values[10] = json.loads(values[10]) if values[10] else {}
        if len(values) > 13:
            values[13] = json.loads(values[13]) if values[13] else {}
        return cls(*values)

    def as_dict(self) -> dict[str, Any]:
        """All columns, in table order (the JSON-lines export shape)."""
        return {name: getattr(self, name) for name in EVENT_COLUMNS}


@dataclass(frozen=True)
class NodeRecord:
    """A node's current row: its state, step in progress, gate, errors and lease."""

    name: str
    role: str
    state: str
    step: str | None
    attempt: int
    gate: str | None
    last_error: str | None
    failed_from: str | None
    maintenance: bool
    maintenance_reason: str | None
    lease_owner: str | None
    lease_pid: int | None
    lease_since: str | None
    heartbeat: str | None
    updated_at: str | None
    last_seq: int | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> NodeRecord:
        """Build from a ``nodes`` row in :data:`NODE_COLUMNS` order."""
        values = list(row)
        values[8] = bool(values[8])
        return cls(*values)


class VerifyStatus:
    """The verdict of :meth:`Journal.verify` and :func:`verify_export`.

    Only ``VERIFIED`` proves the record (chain, rows and signatures against a trusted
    public key); ``CHAIN_ONLY`` was asked for explicitly and says nothing about who wrote
    the chain; ``UNVERIFIED`` means no trusted key (or nothing signed): a command must
    treat it as a failure (exit 4), as it does ``FAILED``.
    """

    VERIFIED = "VERIFIED"
    CHAIN_ONLY = "CHAIN_ONLY"
    UNVERIFIED = "UNVERIFIED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class VerifyReport:
    """The result of an integrity check of a journal or an export.

    ``ok`` is true when no problem was found in what was checked (``warning:`` lines do
    not count); ``status`` (a :class:`VerifyStatus` value) is the verdict a command acts
    on: anything but ``VERIFIED`` (or an explicitly requested ``CHAIN_ONLY``) is exit 4.
    ``sealed`` is ``True`` when checkpoint signatures were checked against a trusted
    public key and hold, ``False`` when one does not, ``None`` when none was checked.
    ``signed_seq`` is the last event a verified signature covers (0: none);
    ``start_seq`` the first event an incremental check read (1: the whole chain);
    ``head_seq`` the chain's last event; ``head_signed`` whether the head signature (meta
    ``head_signature``) holds: ``True``, ``False`` (forged or stale), ``None`` (none, or no key).
    """

    ok: bool
    problems: list[str]
    events: int
    sealed: bool | None
    status: str = VerifyStatus.UNVERIFIED
    signed_seq: int = 0
    start_seq: int = 1
    head_seq: int = 0
    head_signed: bool | None = None

    @property
    def verified(self) -> bool:
        """Whether the record is proven (status ``VERIFIED``)."""
        return self.status == VerifyStatus.VERIFIED

    def raise_for_problems(self) -> None:
        """Raise :class:`config.errors.IntegrityError` listing the problems unless ``ok``."""
        if not self.ok:
            raise IntegrityError("the journal failed its integrity check:\n  " + "\n  ".join(self.problems))
