"""The simulated world's SQLite schema and its in-memory field indexes.

Plain helpers of :mod:`adapters.sim.world`, kept apart so the world stays one job: the
store, latency, faults and effect log shared by the twins.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA", "index_add", "index_discard", "hashable"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    system TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,          -- JSON
    PRIMARY KEY (system, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS effects (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL,          -- UTC, ISO 8601
    node   TEXT NOT NULL,
    kind   TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""


# An index maps a field's value to the one key that has it (a str: natural keys are
# unique, and a set per value would cost ~200 bytes per node) or to a set of keys.
def index_add(index: dict[Any, Any], value: Any, key: str) -> None:
    found = index.get(value)
    if found is None or found == key:
        index[value] = key
    elif isinstance(found, str):
        index[value] = {found, key}
    else:
        found.add(key)


def index_discard(index: dict[Any, Any], value: Any, key: str) -> None:
    found = index.get(value)
    if found == key:
        del index[value]
    elif isinstance(found, set):
        found.discard(key)
        if len(found) == 1:
            index[value] = next(iter(found))


def hashable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None
