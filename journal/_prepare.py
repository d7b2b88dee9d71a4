"""A :class:`Transition` validated and scrubbed, ready for the journal's write transaction.

Secrets are scrubbed before anything is hashed, so the chain never witnesses one; the
node-row columns the transition sets are kept as ``sets_text`` (canonical JSON, part of
the event's hash), which is what lets verify derive every node row from the events.
"""

from __future__ import annotations

import json
import operator
from typing import Any

from config.secrets import REDACTOR
from journal._chain import _js, canonical_json
from journal._records import EVENT_COLUMNS, NODE_COLUMNS, Transition

__all__ = ["UPDATABLE", "Prepared", "EVENT_SELECT", "NODE_SELECT", "INSERT_EVENT", "UPSERT_META"]

# Node-row columns a Transition may set; the rest belong to the journal (leases, seq).
UPDATABLE = frozenset(
    {"state", "step", "attempt", "gate", "last_error", "failed_from", "maintenance", "maintenance_reason"}
)
EVENT_SELECT = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
NODE_SELECT = f"SELECT {', '.join(NODE_COLUMNS)} FROM nodes"
INSERT_EVENT = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
UPSERT_META = "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"


def _update_sql(columns: tuple[str, ...]) -> str:
    assignments = "".join(f"{c} = ?, " for c in columns)
    return f"UPDATE nodes SET {assignments}updated_at = ?, last_seq = ? WHERE name = ?"


# One SQL text per column set, so sqlite3's statement cache keeps each one prepared.
_UPDATE_SQL: dict[tuple[str, ...], str] = {}


def _nullable(field: str, value: Any) -> str | None:
    if value is None or value == "":
        return None  # "" is stored as NULL, so a CSV export's empty cell is unambiguous
    if not isinstance(value, str):
        raise TypeError(f"Transition.{field} must be a str or None (got {type(value).__name__} {value!r})")
    return REDACTOR.scrub_text(value)


class Prepared:
    """A Transition validated and scrubbed, ready for the write transaction."""

    __slots__ = (
        "node",
        "kind",
        "step",
        "attempt",
        "key",
        "from_state",
        "to_state",
        "actor",
        "payload",
        "payload_text",
        "sets",
        "sets_text",
        "sql",
        "values",
    )

    def __init__(self, t: Transition, *, decode: bool = True) -> None:
        if not isinstance(t, Transition):
            raise TypeError(f"commit() takes Transition objects (got {type(t).__name__})")
        if not isinstance(t.kind, str) or not t.kind:
            raise ValueError(f"Transition.kind must be a non-empty string (got {t.kind!r})")
        if t.node is not None and (not isinstance(t.node, str) or not t.node):
            raise ValueError(f"Transition.node must be a node name or None (got {t.node!r})")
        if not isinstance(t.actor, str) or not t.actor:
            raise ValueError(f"Transition.actor must be a non-empty string (got {t.actor!r})")
        scrub = REDACTOR.scrub_text
        self.node = t.node
        self.kind = scrub(t.kind)
        self.actor = scrub(t.actor)
        self.step = _nullable("step", t.step)
        self.key = _nullable("key", t.key)
        self.from_state = _nullable("from_state", t.from_state)
        self.to_state = _nullable("to_state", t.to_state)
        self.attempt = t.attempt if type(t.attempt) is int else operator.index(t.attempt)
        if t.payload:
            # Scrub before hashing: the hash must never be a witness of a secret either.
            payload = t.payload if type(t.payload) is dict else dict(t.payload)  # scrub() copies a dict
            self.payload_text = canonical_json(REDACTOR.scrub(payload))
            # As it will read back; not decoded for a caller that takes only the sequence number
            # (Journal.append: a 1000-node run recap decoded again was ~1 MB at the run's peak, #11).
            self.payload = json.loads(self.payload_text) if decode else {}
        else:
            self.payload_text, self.payload = "{}", {}
        self.sql: str | None = None
        self.values: tuple[Any, ...] = ()
        self.sets: dict[str, Any] = {}
        self.sets_text = "{}"
        if self.node is not None:
            self._prepare_update(t.update)
        elif t.update:
            raise ValueError(f"Transition {t.kind!r}: update needs a node (a run-level event has node=None)")

    def _prepare_update(self, update: Any) -> None:
        values = dict(update) if update else {}
        if not UPDATABLE.issuperset(values):
            unknown = set(values) - UPDATABLE
            raise ValueError(
                f"Transition {self.kind!r} for node {self.node}: cannot update {sorted(unknown)}; "
                f"updatable columns are {sorted(UPDATABLE)}"
            )
        if "state" in values:
            state = values["state"]
            if not isinstance(state, str) or not state:
                raise ValueError(f"Transition {self.kind!r}: update state must be a non-empty str (got {state!r})")
            state = REDACTOR.scrub_text(state)
            if self.to_state is None:
                # The event must say where the node went: verify() checks rows against it.
                self.to_state = state
            elif state != self.to_state:
                raise ValueError(
                    f"Transition {self.kind!r} for node {self.node}: update state {state!r} "
                    f"contradicts to_state {self.to_state!r}; give one of them"
                )
        elif self.to_state is not None:
            values["state"] = self.to_state
        columns = tuple(sorted(values))
        cleaned = []
        for column in columns:
            value = values[column]
            if column == "maintenance":
                value = int(bool(value))
            elif column == "attempt":
                value = operator.index(value)
            elif isinstance(value, str):
                value = REDACTOR.scrub_text(value)
            elif value is not None and column != "state":
                raise TypeError(
                    f"Transition {self.kind!r}: update {column} must be a str or None (got {type(value).__name__})"
                )
            cleaned.append(value)
        sql = _UPDATE_SQL.get(columns)
        if sql is None:
            sql = _UPDATE_SQL[columns] = _update_sql(columns)
        self.sql = sql
        self.values = tuple(cleaned)
        self.sets = dict(zip(columns, cleaned, strict=True))  # what json.loads(sets_text) gives back
        # canonical_json(self.sets) assembled by hand (sorted column names that need no escaping; str, int,
        # bool or None values): a dict's encoding was a tenth of a commit's preparation (#7; a test pins it).
        self.sets_text = "{" + ",".join(f'"{c}":{_js(v)}' for c, v in zip(columns, cleaned, strict=True)) + "}"
