"""The simulated world's read-through cache: each system's keys and the most recently used values, decoded.

:class:`adapters.sim.world.SimWorld` is built on it: it writes through (:meth:`WorldCache._set_cached` at once,
SQLite at the group commit), and every read here is a dict look-up unless the value fell out of the cache.
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from adapters.sim._store import hashable as _hashable
from adapters.sim._store import index_add as _index_add
from adapters.sim._store import index_discard as _index_discard
from adapters.sim._store import reload as _reload

__all__ = ["WorldCache"]

_MISSING = object()
# Decoded values kept in memory: the working set of the nodes in flight, not the whole world. 256, not 128: at 1000
# nodes 128 missed 6.0 reads per node (each a SELECT and a JSON decode), 256 misses 0.43, 384 none but costs the
# simulate benchmark's 10 KB per node (issue #11: bench/simulate_bench.py 9.6-9.7 KB at 128 and 256, 10.25 at 384).
_RECENT_VALUES = 256


class WorldCache:
    """The reads of a world file, from memory; a shared file is re-read whenever another process committed."""

    def __init__(self, conn: sqlite3.Connection, shared: bool) -> None:
        self._conn = conn
        self._shared = shared
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0] if shared else 0
        # Memory stays bounded with thousands of nodes: SQLite holds the values, this process
        # keeps only each system's keys and the most recently used values, decoded.
        self._keys: dict[str, set[str]] = defaultdict(set)
        self._recent: OrderedDict[tuple[str, str], Any] = OrderedDict()
        # A defaultdict, not a Counter: a Counter's __missing__ is Python code, run on each read of a system never
        # changed (the Pexip gate's stamp reads seven systems per call; issue #11: 44,000 stamps per 1000 nodes).
        self._versions: defaultdict[str, int] = defaultdict(int)
        self._indexes: dict[tuple[str, str], dict[Any, Any]] = {}
        self._indexed: dict[str, list[tuple[str, dict[Any, Any]]]] = {}  # system -> its (field, index) pairs
        self._derived: dict[tuple[str, str], dict[str, Any]] = {}  # (system, name) -> {key: fn(value)}
        self._deriving: dict[str, list[tuple[Callable[[Any], Any], dict[str, Any]]]] = {}  # system -> (fn, table)
        self._pending: dict[tuple[str, str], str | None] = {}  # written, not yet committed (JSON; None: deleted)
        for system, key in conn.execute("SELECT system, key FROM kv"):
            self._keys[system].add(key)

    def _sync(self) -> None:
        """Shared: drop the cache if another process committed since (keys reloaded, versions bumped)."""
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        self._keys, self._recent = _reload(self._conn, self._pending)
        self._indexes.clear()
        self._indexed.clear()
        self._derived.clear()
        self._deriving.clear()
        for system in set(self._keys) | set(self._versions):
            self._versions[system] += 1

    def get(self, system: str, key: str, default: Any = None) -> Any:
        """The value stored under ``(system, key)``: read-only, copy it before changing it."""
        if self._shared:
            self._sync()
        slot = (system, key)
        value = self._recent.get(slot, _MISSING)
        if value is not _MISSING:  # a cached value's key exists: every deletion and reload drops it from here
            self._recent.move_to_end(slot)
            return value
        if key not in self._keys.get(system, ()):
            return default
        text = self._pending.get(slot)
        if text is None:
            row = self._conn.execute("SELECT value FROM kv WHERE system = ? AND key = ?", slot).fetchone()
            if row is None:
                return default
            text = row[0]
        value = json.loads(text)
        self._remember(slot, value)
        return value

    def _remember(self, slot: tuple[str, str], value: Any) -> None:
        self._recent[slot] = value
        self._recent.move_to_end(slot)
        if len(self._recent) > _RECENT_VALUES:
            self._recent.popitem(last=False)

    def keys(self, system: str) -> list[str]:
        """Every key of ``system``, sorted (no value read: cheaper than :meth:`items` when few values are wanted)."""
        if self._shared:
            self._sync()
        return sorted(self._keys.get(system, ()))

    def items(self, system: str) -> Iterator[tuple[str, Any]]:
        """Every ``(key, value)`` of ``system`` (values read-only)."""
        if self._shared:
            self._sync()
        keys = sorted(self._keys.get(system, ()))
        return iter([(k, self.get(system, k)) for k in keys])

    def lookup(self, system: str, field: str, value: Any) -> list[str]:
        """Keys of ``system`` whose value (a dict) has ``value[field] == value``.

        An index per ``(system, field)`` is built on first use and kept up to date by every
        write, so natural-key look-ups stay O(1) with thousands of objects.
        """
        if self._shared:
            self._sync()
        index = self._indexes.get((system, field))
        if index is None:
            index = {}
            for key, obj in self.items(system):
                if isinstance(obj, dict) and _hashable(obj.get(field)):
                    _index_add(index, obj.get(field), key)
            self._indexes[(system, field)] = index
            self._indexed.setdefault(system, []).append((field, index))
        if not _hashable(value):
            return []
        found = index.get(value, ())
        return [found] if isinstance(found, str) else sorted(found)

    def derived(self, system: str, name: str, fn: Callable[[Any], Any]) -> dict[str, Any]:
        """``{key: fn(value)}`` for every value of ``system``: read-only, built on first use (under ``name``, with
        ``fn``) and kept up to date by every write, as :meth:`lookup`'s indexes are.

        For a twin that reads a small part of many values on each call (vSphere's datastore IOPS sum): a dict
        look-up per key instead of a value read through the bounded cache, which those reads would churn.
        """
        if self._shared:
            self._sync()
        table = self._derived.get((system, name))
        if table is None:
            table = {key: fn(value) for key, value in self.items(system)}
            self._derived[(system, name)] = table
            self._deriving.setdefault(system, []).append((fn, table))
        return table

    def version(self, system: str) -> int:
        """How many changes ``system`` has seen since open (for callers' caches)."""
        if self._shared:
            self._sync()
        return self._versions[system]

    def stamp(self, systems: tuple[str, ...]) -> int:
        """One number that changes whenever any of ``systems`` changes: the sum of their versions (each only grows)."""
        if self._shared:
            self._sync()
        return sum(map(self._versions.__getitem__, systems))

    def _set_cached(self, system: str, key: str, value: Any) -> None:
        indexed = self._indexed.get(system, ())
        old = self.get(system, key) if indexed else None
        for field, index in indexed:
            if isinstance(old, dict) and _hashable(old.get(field)):
                _index_discard(index, old.get(field), key)
            if isinstance(value, dict) and _hashable(value.get(field)):
                _index_add(index, value.get(field), key)
        for fn, table in self._deriving.get(system, ()):
            if value is None:
                table.pop(key, None)
            else:
                table[key] = fn(value)
        if value is None:
            self._keys[system].discard(key)
            self._recent.pop((system, key), None)
        else:
            self._keys[system].add(key)
            self._remember((system, key), value)
        self._versions[system] += 1
