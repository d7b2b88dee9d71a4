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
from journal._chain import _encode_str, _js, canonical_json, content_parts
from journal._records import EVENT_COLUMNS, NODE_COLUMNS, Transition

__all__ = ["UPDATABLE", "Prepared", "update_sql", "EVENT_SELECT", "NODE_SELECT", "INSERT_EVENT", "UPSERT_META"]

# Node-row columns a Transition may set; the rest belong to the journal (leases, seq).
UPDATABLE = frozenset(
    {"state", "step", "attempt", "gate", "last_error", "failed_from", "maintenance", "maintenance_reason"}
)
EVENT_SELECT = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
NODE_SELECT = f"SELECT {', '.join(NODE_COLUMNS)} FROM nodes"
INSERT_EVENT = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
UPSERT_META = "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"


# One SQL text per column set, so sqlite3's statement cache keeps each one prepared.
_UPDATE_SQL: dict[tuple[str, ...], str] = {}


def update_sql(columns: tuple[str, ...]) -> str:
    """The node row's UPDATE of ``columns`` (sorted), then ``updated_at``, ``last_seq`` and the name."""
    sql = _UPDATE_SQL.get(columns)
    if sql is None:
        assignments = "".join(f"{c} = ?, " for c in columns)
        sql = _UPDATE_SQL[columns] = f"UPDATE nodes SET {assignments}updated_at = ?, last_seq = ? WHERE name = ?"
    return sql


# A node-row update cleaned: (the event's to_state, the UPDATE, its values, the columns set, as canonical JSON,
# the event's content_parts).
_Cleaned = tuple[str | None, str, tuple[Any, ...], dict[str, Any], str, tuple[str, str, str, str]]
_KEPT: dict[Any, _Cleaned] = {}  # Prepared._prepare_update's, by what a cleaning depends on
_KEPT_MAX = 256  # distinct keys of a 1000-node simulation: 66 (steps x attempts, states, kinds)


def _nullable(field: str, value: Any) -> str | None:
    if type(value) is str and value:  # the common case first: four fields of every event (#11)
        return REDACTOR.scrub_text(value)
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
        "parts",
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
            self._prepare_update(t.update, decode)
        elif t.update:
            raise ValueError(f"Transition {t.kind!r}: update needs a node (a run-level event has node=None)")
        else:
            self.parts = content_parts(self.actor, self.attempt, self.from_state, self.kind, self.step, self.to_state)

    def _prepare_update(self, update: Any, own_sets: bool) -> None:
        # The engine's updates repeat (a step's name and attempt, a state, no error) across nodes and commits:
        # what a cleaning made of one is kept (#11). The key holds the update, the event's to_state, and for
        # each value its scrubbed text (a secret registered since changes it) or its type (1.0 and True are
        # not the int 1): what the cleaning depends on, so a hit is what it would make again. With the event's
        # other cleaned fields of content_parts (an exact int attempt, texts scrubbed), it also keeps those parts.
        scrub = REDACTOR.scrub_text
        items = tuple(update.items()) if update else ()
        key: tuple[Any, ...] | None = (
            self.to_state,
            items,
            tuple([scrub(v) if type(v) is str else type(v) for _, v in items]),
            self.kind,
            self.actor,
            self.step,
            self.attempt,
            self.from_state,
        )
        try:
            kept = _KEPT.get(key)
        except TypeError:  # an unhashable value: _clean names it
            kept = key = None
        if kept is None:
            kept = self._clean(dict(items))
            if key is not None:
                if len(_KEPT) >= _KEPT_MAX:
                    _KEPT.clear()
                _KEPT[key] = kept
        self.to_state, self.sql, self.values, sets, self.sets_text, self.parts = kept
        # The event's own when it is handed out (commit()'s Event: a caller may change it); else only read.
        self.sets = dict(sets) if own_sets else sets

    def _clean(self, values: dict[str, Any]) -> _Cleaned:
        """Validate and scrub a node-row update: (to_state, sql, values, sets, sets_text, content parts)."""
        if not UPDATABLE.issuperset(values):
            unknown = set(values) - UPDATABLE
            raise ValueError(
                f"Transition {self.kind!r} for node {self.node}: cannot update {sorted(unknown)}; "
                f"updatable columns are {sorted(UPDATABLE)}"
            )
        to_state = self.to_state
        if "state" in values:
            state = values["state"]
            if not isinstance(state, str) or not state:
                raise ValueError(f"Transition {self.kind!r}: update state must be a non-empty str (got {state!r})")
            state = REDACTOR.scrub_text(state)
            if to_state is None:
                # The event must say where the node went: verify() checks rows against it.
                to_state = state
            elif state != to_state:
                raise ValueError(
                    f"Transition {self.kind!r} for node {self.node}: update state {state!r} "
                    f"contradicts to_state {to_state!r}; give one of them"
                )
        elif to_state is not None:
            values["state"] = to_state
        columns = tuple(sorted(values))
        scrub = REDACTOR.scrub_text
        cleaned = []
        # canonical_json(sets) assembled by hand, each value's JSON beside its cleaning (sorted column
        # names that need no escaping; str, int or None values): a dict's encoding was a tenth of a commit's
        # preparation (#7; a test pins the equality).
        texts = []
        for column in columns:
            value = values[column]
            if column == "maintenance":
                value = 1 if value else 0  # int(bool(value))
                text = "1" if value else "0"
            elif column == "attempt":
                value = value if type(value) is int else operator.index(value)
                text = str(value)
            elif value is None:
                text = "null"
            elif isinstance(value, str):
                value = scrub(value)
                text = _encode_str(value)
            elif column != "state":
                raise TypeError(
                    f"Transition {self.kind!r}: update {column} must be a str or None (got {type(value).__name__})"
                )
            else:
                text = _js(value)
            cleaned.append(value)
            texts.append(f'"{column}":{text}')
        sets = dict(zip(columns, cleaned, strict=True))  # what json.loads(sets_text) gives back
        parts = content_parts(self.actor, self.attempt, self.from_state, self.kind, self.step, to_state)
        return to_state, update_sql(columns), tuple(cleaned), sets, "{" + ",".join(texts) + "}", parts
