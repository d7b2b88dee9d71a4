"""The simulated world: one SQLite file that every simulated twin keeps its state in.

The twins (``adapters/sim/<system>.py``) stand in for vSphere, the Pexip Management Node, its console, the
CA and the LDAP directory. They share one :class:`SimWorld`, so that one twin can see what
another did (a Conferencing Node VM may only be imported once the Management Node made its
deployment file) and so that a killed simulation resumes from the same world.

Why it is built this way:

- State is a key/value store per *system* (``"vsphere:vm"``, ``"pexip:worker_vm"``...),
  cached in memory at open and written through: reads are dict look-ups.
- Every change and the record of its effect are written in ONE transaction, and changes
  issued by many coroutines in the same event-loop tick share that transaction (group
  commit): 1,000 nodes making ~40 changes each must cost seconds, not minutes.
  The awaiting coroutine resumes only once its transaction has committed.
- Latency (with jitter) and faults are injected here, at one gate (:meth:`SimWorld.call`)
  that every twin method passes through, so every twin behaves alike.

Example::

    world = SimWorld.open("world.sqlite", latency=0.05, faults="transient=0.1,seed=7")
    vsphere = SimVSphere(world, deployment)
    ...
    print(world.effects_summary())   # {"mgr": {"vm_import": 1, ...}, ...}
    await world.aclose()
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.sim import _store
from adapters.sim._cache import WorldCache
from adapters.sim._faults import EXIT_CODE, FaultPlan, FaultPoint
from adapters.sim._store import Effect, digest
from config.errors import ConfigError, Rejected, Unreachable

__all__ = [
    "SimWorld",
    "FaultPlan",
    "FaultPoint",
    "Effect",
    "EXIT_CODE",
    "VM",
    "CONSOLE",
    "CA",
    "pexip_system",
    "digest",
]

# Where each twin keeps its state. Twins read each other's state through these names
# (never by importing each other): vSphere needs the Manager's deployment files, the
# Manager's status needs the VMs' power state, and so on.
VM = "vsphere:vm"  # key: VM name
CONSOLE = "console:node"  # key: node name
CA = "ca"  # keys: "root", "csr/<node>"


def pexip_system(resource: str) -> str:
    """The system name under which the Management API twin keeps ``resource`` objects."""
    return f"pexip:{resource}"


_FAULTS_SYSTEM = "_faults"  # where fired exit faults are remembered, so each fires once
_encode = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per call as json.dumps(separators=)


# --- the world --------------------------------------------------------------------------


class SimWorld(WorldCache):
    """The store, clock-free latency, faults and effect log shared by the simulated twins (reads: :class:`WorldCache`).

    One process at a time owns a world file (it is opened in SQLite's exclusive locking
    mode, so a second process gets a clear error instead of a silently stale cache), unless
    it is opened ``shared``: the lab's simulators and a run then use it side by side, and each
    drops its cache whenever the other committed (SQLite's ``data_version``).
    """

    def __init__(
        self, path: Path, conn: sqlite3.Connection, latency: float, faults: FaultPlan, seed: int | None, shared: bool
    ):
        super().__init__(conn, shared)
        self.path = path
        self.latency = latency
        self.faults = faults
        self._rng = random.Random(faults.seed if faults.seed is not None else seed)
        self._pending_effects: list[Effect] = []
        self._waiters: list[asyncio.Future[None]] | None = None  # of the commit scheduled, if one is
        self._broken: BaseException | None = None
        self._closed = False
        self._commits = 0
        self._changes = 0
        self._effects_total = conn.execute("SELECT count(*) FROM effects").fetchone()[0]

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        latency: float = 0.0,
        faults: str | FaultPlan = "",
        seed: int | None = None,
        shared: bool = False,
    ) -> SimWorld:
        """Open (or create) the world stored at ``path``.

        Args:
            latency: mean seconds of each side effect (observations take a tenth of it);
                each wait is jittered uniformly between 0.5x and 1.5x. 0: no waiting.
            faults: a :class:`FaultPlan` or its ``--faults`` spec.
            seed: seeds jitter and transient faults (a ``seed=`` in ``faults`` wins).
            shared: another process uses the file too (the lab's simulators): see the class.

        Raises:
            ConfigError: a bad ``faults`` spec or latency, or a world file that cannot be
                opened (in use by another process, not a world).
        """
        plan = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults)
        if latency < 0:
            raise ConfigError(f"must be >= 0 seconds (got {latency})", field="--latency")
        path = Path(path)
        try:
            conn = _store.connect(path, shared=shared)
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot open the simulated world {path}: {exc}; "
                "is another simulation using it? wait for it or pass another --world file",
                field="--world",
            ) from exc
        return cls(path, conn, latency, plan, seed, shared)

    # --- writing --------------------------------------------------------------------------

    async def apply(self, changes: Iterable[tuple[str, str, Any]], effects: Sequence[Effect] = ()) -> None:
        """Apply ``(system, key, value)`` changes (value ``None`` deletes) and record
        ``effects``, atomically; return once they are committed.

        The cache changes at once, so every later read in this process sees the change;
        the transaction is shared with the other changes of this event-loop tick.
        """
        self._check_usable()
        for system, key, value in changes:
            if value is None:
                self._set_cached(system, key, None)
                self._pending[(system, key)] = None
            else:
                text = _encode(value)
                self._set_cached(system, key, _store.as_stored(value, text))
                self._pending[(system, key)] = text
        self._pending_effects.extend(effects)
        await self._committed()

    async def settled(self) -> None:
        """Wait until every change already applied in this process is committed."""
        if self._waiters is not None:
            await self._committed()

    async def _committed(self) -> None:
        # One future per waiter (not one shared future under asyncio.shield): a caller cancelled while
        # waiting cancels only its own, and the commit wakes each waiter in one hop (issue #11: 110,000 waits).
        loop = asyncio.get_running_loop()
        if self._waiters is None:
            self._waiters = []
            loop.call_soon(self._flush)
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def _flush(self) -> None:
        """Commit everything pending in one transaction and wake its waiters."""
        waiters, self._waiters = self._waiters or (), None
        pending, self._pending = self._pending, {}
        effects, self._pending_effects = self._pending_effects, []
        try:
            self._write(pending, effects)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter, then re-raised
            self._broken = exc
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(
                        Rejected(f"the simulated world {self.path} could not be written: {exc}", system="sim_world")
                    )
            if not isinstance(exc, Exception):
                raise
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _write(self, pending: dict[tuple[str, str], str | None], effects: Sequence[Effect]) -> None:
        if not pending and not effects:
            return
        _store.write(self._conn, pending, effects)
        self._commits += 1
        self._changes += len(pending)
        self._effects_total += len(effects)

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError(f"the simulated world {self.path} is closed")
        if self._broken is not None:
            raise Rejected(
                f"the simulated world {self.path} failed to commit earlier ({self._broken}); "
                "its state in this process is no longer trustworthy: restart the simulation",
                system="sim_world",
            )

    # --- the gate every twin call passes through ------------------------------------------

    async def call(self, system: str, what: str, *, change: bool) -> None:
        """Inject a transient fault, then wait the call's latency.

        Args:
            system: the twin's name, for the error (``"vsphere"``, ``"pexip"``...).
            what: the operation, for the error message.
            change: a side effect (full latency) or an observation (a tenth of it).

        Raises:
            Unreachable: the transient fault, before anything changed.
        """
        self._check_usable()
        if self.faults.transient and self._rng.random() < self.faults.transient:
            raise Unreachable(
                f"{system}: {what} failed: injected transient fault "
                f"(--faults transient={self.faults.transient:g}); retry",
                system=system,
            )
        if self.latency > 0:
            scale = 1.0 if change else 0.1
            await asyncio.sleep(self.latency * scale * self._rng.uniform(0.5, 1.5))
        if not change and self._waiters is not None:
            # An observation must not report a change that a crash could still undo. (settled() inlined: no
            # coroutine made when nothing is pending; issue #11: 60,000 observations per 1000 nodes.)
            await self._committed()

    def jitter(self) -> float:
        """One latency draw (``latency`` x uniform(0.5, 1.5)), for twins that model delays."""
        return self.latency * self._rng.uniform(0.5, 1.5) if self.latency > 0 else 0.0

    # --- hooks the engine calls around each step ----------------------------------------

    def before_step(self, node: str, step: str) -> None:
        """Raise ``Rejected`` when a ``permanent`` fault matches ``(node, step)``."""
        for point in self.faults.permanent:
            if point.matches(node, step):
                raise Rejected(f"injected permanent fault at {step} on {node}", system="sim")

    def after_apply(self, node: str, step: str) -> None:
        """Die here (``os._exit(70)``) when an ``exit`` fault matches and has not fired yet.

        Called after a step's side effects were applied and before the journal commits
        the step: the worst moment to crash. The firing is committed to the world first,
        so a resumed run goes past it.
        """
        for point in self.faults.exits:
            key = f"exit={point}"
            if point.matches(node, step) and self.get(_FAULTS_SYSTEM, key) is None:
                fired = {"node": node, "step": step, "at": datetime.now(UTC).isoformat()}
                self._set_cached(_FAULTS_SYSTEM, key, fired)
                self._pending[(_FAULTS_SYSTEM, key)] = json.dumps(fired)
                self._flush()  # also commits changes still queued by other coroutines
                os.write(2, f"simulated crash: injected exit fault at {step} on {node} (exit {EXIT_CODE})\n".encode())
                os._exit(EXIT_CODE)

    # --- introspection --------------------------------------------------------------------

    def effects_summary(self) -> dict[str, dict[str, int]]:
        """``{node: {kind: count}}`` of every change ever committed to this world.

        Counted by SQLite when asked, not kept in memory (a counter per node adds up)."""
        return _store.effects_summary(self._conn)

    def state_sha256(self) -> str:
        """SHA-256 of every stored value (what a saved plan saw of this world); the effect log is not state."""
        entries = ((system, key, value) for system in sorted(self._keys) for key, value in self.items(system))
        return _store.state_sha256(entries)

    def effects(self) -> list[dict[str, Any]]:
        """Every committed effect in order: ``seq``, ``at``, ``node``, ``kind``, ``detail``."""
        return _store.effect_rows(self._conn)

    def statistics(self) -> dict[str, int]:
        """Transactions committed and changes written since open, and what is pending."""
        return {
            "commits": self._commits,
            "changes": self._changes,
            "effects": self._effects_total,
            "pending": len(self._pending),
        }

    # --- closing ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Wait for pending commits, then close the file."""
        if not self._closed:
            await self.settled()
        self.close()

    def close(self) -> None:
        """Commit anything still pending, then close the file (idempotent)."""
        if self._closed:
            return
        if self._pending or self._pending_effects:
            self._flush()
        self._closed = True
        self._conn.close()

    async def __aenter__(self) -> SimWorld:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"SimWorld({str(self.path)!r}, latency={self.latency}, faults={str(self.faults)!r})"
