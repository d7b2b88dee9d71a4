"""Node rows derived from the events alone: what every node row must equal.

A node row is a cache. Each event of a node records the row columns it set (``sets``),
exactly as :meth:`Journal.commit` applied them, plus ``updated_at`` (the event's time)
and ``last_seq``; a ``node_registered`` event creates the row (role from its payload,
attempt 0, maintenance off). Replaying the events therefore gives every column of
every row, and a row that differs was edited outside the journal.

    fields = derive_nodes(journal.events())
    assert fields["mgr"].state == journal.node("mgr").state
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from journal._chain import canonical_json
from journal._records import Event
from journal.kinds import DEFINITION_CHANGED, DEFINITION_RECORDED, DEPLOYMENT_BOUND, NODE_REGISTERED

__all__ = ["DERIVED_COLUMNS", "NodeRecordFields", "Deriver", "derive_nodes", "snapshot_digest", "text_digest"]

# The node-row columns the events determine (leases are not events: they are left out).
DERIVED_COLUMNS = (
    "role",
    "state",
    "step",
    "attempt",
    "gate",
    "last_error",
    "failed_from",
    "maintenance",
    "maintenance_reason",
    "updated_at",
    "last_seq",
)
_SETTABLE = frozenset(DERIVED_COLUMNS) - {"role", "updated_at", "last_seq"}


@dataclass(frozen=True)
class NodeRecordFields:
    """The columns of a node row that its events determine."""

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
    updated_at: str | None
    last_seq: int | None


def _new_row(role: Any) -> dict[str, Any]:
    return {
        "role": role,
        "state": None,
        "step": None,
        "attempt": 0,
        "gate": None,
        "last_error": None,
        "failed_from": None,
        "maintenance": 0,
        "maintenance_reason": None,
        "updated_at": None,
        "last_seq": None,
    }


class Deriver:
    """Replays events into node rows, noting each event that cannot have been written.

    ``rows`` maps a node name to its derived columns (``maintenance`` as 0/1, as stored).
    Start from a snapshot (:meth:`from_snapshot`) to replay only the events after it.
    """

    def __init__(self, rows: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.rows: dict[str, dict[str, Any]] = {name: dict(row) for name, row in (rows or {}).items()}
        self._borrowed = False  # rows not yet fed are the snapshot's own (from_snapshot): copied at their first event
        self._parts: Mapping[str, str] | None = None  # from_parts: each row's encoded part, decoded at its first event
        self.problems: list[str] = []
        self.touched: set[str] = set()  # the nodes an event was fed for (a checkpoint re-encodes only these)
        self.deployment: tuple[int, Any] | None = None  # (seq, identity) of deployment_bound
        # (seq, the definition hash it recorded, the one it replaced) of the latest definition_recorded/_changed
        self.definition: tuple[int, Any, Any] | None = None

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Mapping[str, Any]]) -> Deriver:
        """A deriver holding the rows of a checkpoint's snapshot (never changed: a row is copied at its first
        event, so a checkpoint of 1000 nodes does not copy the rows that did not move)."""
        deriver = cls()
        deriver.rows = dict(snapshot)  # type: ignore[arg-type]  # values copied before any change (feed)
        deriver._borrowed = True
        return deriver

    @classmethod
    def from_parts(cls, parts: Mapping[str, str]) -> Deriver:
        """A deriver over a checkpoint's snapshot kept as each node's encoded ``"name":{row}`` part (as a checkpoint
        writes it): a row is decoded at its node's first event, so ``rows`` holds only the nodes fed (issue #11)."""
        deriver = cls()
        deriver._parts = parts
        return deriver

    def feed(
        self,
        seq: int,
        at: str,
        node: str | None,
        kind: str,
        from_state: str | None,
        to_state: str | None,
        payload: Any,
        sets: Any,
    ) -> None:
        """Apply one event (fields as stored, payload and sets decoded)."""
        if node is None:
            if kind == DEPLOYMENT_BOUND and isinstance(payload, dict):
                self.deployment = (seq, payload.get("deployment"))
            elif kind == DEFINITION_RECORDED and isinstance(payload, dict):
                self.definition = (seq, payload.get("definition_hash"), None)
            elif kind == DEFINITION_CHANGED and isinstance(payload, dict):
                self.definition = (seq, payload.get("to"), payload.get("from"))
            return
        row = self.rows.get(node)
        if row is None and self._parts is not None and (part := self._parts.get(node)) is not None:
            row = self.rows[node] = json.loads("{" + part + "}")[node]
        if node not in self.touched:
            self.touched.add(node)
            if self._borrowed and row is not None:
                row = self.rows[node] = dict(row)
        if kind == NODE_REGISTERED:
            if row is not None:
                self.problems.append(f"event seq {seq}: node {node} registered again (seq {row['last_seq']} knew it)")
            role = payload.get("role") if isinstance(payload, dict) else None
            row = self.rows[node] = _new_row(role)
        elif row is None:
            self.problems.append(f"event seq {seq}: node {node} has an event before its node_registered")
            row = self.rows[node] = _new_row(None)
        elif from_state is not None and from_state != row["state"]:
            self.problems.append(
                f"event seq {seq}: node {node} moves from_state {from_state!r} but its state was "
                f"{row['state']!r} (seq {row['last_seq']}): the history is not continuous"
            )
        if isinstance(sets, dict):
            for column, value in sets.items():
                if column in _SETTABLE:
                    row[column] = value
                else:
                    self.problems.append(f"event seq {seq}: sets unknown node column {column!r}")
        else:
            self.problems.append(f"event seq {seq}: its sets are not an object")
        row["updated_at"] = at
        row["last_seq"] = seq

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The derived rows, JSON-ready (what a checkpoint stores)."""
        return {name: dict(row) for name, row in self.rows.items()}

    def fields(self) -> dict[str, NodeRecordFields]:
        """The derived rows as :class:`NodeRecordFields`."""
        return {
            name: NodeRecordFields(name=name, **{**row, "maintenance": bool(row["maintenance"])})
            for name, row in self.rows.items()
        }


def derive_nodes(events: Iterable[Event]) -> dict[str, NodeRecordFields]:
    """Every node's row columns as its events, in seq order, set them (a pure function)."""
    deriver = Deriver()
    for e in events:
        deriver.feed(e.seq, e.at, e.node, e.kind, e.from_state, e.to_state, e.payload, e.sets)
    return deriver.fields()


def snapshot_digest(snapshot: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a snapshot: what a checkpoint signs for the rows."""
    return text_digest(canonical_json(dict(snapshot)))


def text_digest(text: str) -> str:
    """sha256 of a snapshot's canonical JSON text (:func:`snapshot_digest` of the snapshot it encodes)."""
    return hashlib.sha256(text.encode()).hexdigest()
