"""The level-triggered reconciler: an event names a node; the node is driven from what is, not from the event.

Each reconcile of a node re-reads its desired state (the deployment the daemon runs now) and
its actual state (the engine's model, rebuilt from the journal, and the systems the steps
observe), then drives it with the engine's own per-node drive (:meth:`Engine.drive_node`):
nothing here knows a step. What the planner answers decides when the node is looked at again:

- done: at the next resync, every ``daemon.resync_s``;
- waiting on a gate, or in maintenance: in ``daemon.gate_recheck_s`` (an approval made over
  the HTTP API or the CLI is journaled by another connection: the daemon sees it then);
- blocked on the Management Node: when the Management Node's own reconcile ends;
- failed: retried with a backoff (5 s, doubling, at most ``daemon.resync_s``); an event for the
  node (a VM of its name appeared) retries it at once.

Drift: the first reconcile of a node after the start, a reload or a resync, and one that an
event about its VM asked for, re-observe what the journal says is done first, as ``run`` does
(``orchestrator._drift``): each difference is journaled as ``drift_detected``, a reversible step
re-applied in place, and the first other one fails the node naming the repair command. Such a
node is not retried (a VM gone, a wizard answered otherwise are an operator's to judge): it stays
failed until the daemon is stopped and the repair command run. A gate re-check reads nothing again.

A new deployment (the file changed, or SIGHUP) is checked as ``run`` checks it; when refused,
the running set is unchanged. When accepted, the steps in flight finish (each commits, or stays
started in the journal, which the next drive resumes as every start-up does), then the engine is
built again over the new deployment from the journal, and every node is queued.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from adapters.base import Systems
from config.errors import AdapterError, ConfigError, OrchestratorError, ResourceLocked
from config.model import Deployment
from journal import Journal, kinds, new_lease_owner
from machines.lifecycle import FAILED, LDAP_AUTHENTICATED
from machines.plan import Action, Blocked, Done, Held, Stopped, Wait
from orchestrator._session import Session, load_deployment, register_secrets
from orchestrator._standby import standby_ready
from orchestrator.daemon._queue import NodeQueue
from orchestrator.engine import Engine
from orchestrator.wiring import open_systems

__all__ = ["Reconciler", "Generation", "BACKOFF_S"]

log = structlog.get_logger("orchestrator.daemon")

BACKOFF_S = 5.0  # the first retry of a failed node; doubles, at most daemon.resync_s

Observer = Callable[[str, str, str | None, str], None]


@dataclass
class Generation:
    """One accepted deployment, the adapters opened for it and the engine over both."""

    deployment: Deployment
    systems: Systems
    engine: Engine
    owned: bool  # systems opened here (a reload), closed here; else the session's


class Reconciler:
    """Drives the nodes of the running deployment, one reconcile per queued name at a time.

    Args:
        session: the open session (its journal, world, systems and checkpointer).
        observer: called after every committed transition, as the engine's observer.
        preflight: the check of a deployment before it runs (``run``'s preflight).
    """

    def __init__(
        self,
        session: Session,
        *,
        observer: Observer | None = None,
        preflight: Callable[[Deployment, Systems], Any] | None = None,
    ) -> None:
        assert session.journal is not None  # a "create" session always has one
        self.session = session
        self.journal: Journal = session.journal
        self.queue = NodeQueue()
        self.owner = new_lease_owner()
        self.results: dict[str, Action] = {}  # each node's last outcome
        self.reconciles = 0
        self._observer = observer
        self._preflight = preflight
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, int] = {}
        self._blocked: set[str] = set()
        self._refresh_due: set[str] = set()  # re-observe the completed milestones at the next reconcile
        self._open = asyncio.Event()  # cleared while a reload drains
        self.reloaded = asyncio.Event()  # set by each accepted reload (the inventory watch restarts)
        self._reload_lock = asyncio.Lock()
        self._standby_lock = asyncio.Lock()
        self._standby_due = True  # a contingency deployment's power-off: after the start, a reload, a drive
        self._stopping = False
        self._generation: Generation | None = None

    # --- the running deployment ---------------------------------------------------------

    @property
    def deployment(self) -> Deployment:
        return self.generation.deployment

    @property
    def generation(self) -> Generation:
        if self._generation is None:
            raise RuntimeError("the reconciler is not started")
        return self._generation

    def names(self) -> list[str]:
        return [n.name for n in self.deployment.nodes]

    async def start(self) -> None:
        """Check the session's deployment, take every node's lease, queue every node.

        Raises:
            ConfigError: the deployment fails the preflight (nothing was changed).
            ResourceLocked: another process (a daemon, a run) holds a node of this journal.
        """
        session = self.session
        if self._preflight is not None and not session.preflighted:  # else the session ran it already
            await self._preflight(session.deployment, session.systems)
        engine = self._engine(session.deployment, session.systems)
        generation = Generation(session.deployment, session.systems, engine, False)
        self.journal.acquire_leases(
            self.names_of(session.deployment),
            owner=self.owner,
            pid=os.getpid(),
            timeout_s=session.deployment.journal.lease_timeout_s,
        )
        self._generation = generation
        self._open.set()
        self._queue_all()

    def _queue_all(self) -> None:
        """Every node, each refreshed first (the start, a reload, a resync)."""
        for name in self.names():
            self._refresh_due.add(name)
            self.queue.add(name)

    @staticmethod
    def names_of(deployment: Deployment) -> list[str]:
        return [n.name for n in deployment.nodes]

    def _engine(self, deployment: Deployment, systems: Systems) -> Engine:
        checkpointer = self.session.checkpointer
        observer = self._observer

        def observed(node: str, state: str, step: str | None, kind: str) -> None:
            if checkpointer is not None:
                checkpointer.committed()  # signs every N transitions, as a run does
            if observer is not None:
                observer(node, state, step, kind)

        engine = Engine(
            deployment,
            self.journal,
            systems,
            actor=self.session.settings.actor,
            hooks=self.session.hooks,
            observer=observed,
            gate_poll_s=min(deployment.daemon.gate_recheck_s, 30.0),
        )
        engine.owner = self.owner  # the daemon's leases: one owner for every generation
        engine.load()  # the actual state: every model rebuilt from the journal's events
        return engine

    # --- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Take queued names and reconcile each (one at a time per node) until :meth:`stop`."""
        while not self._stopping:
            name = await self.queue.get()
            await self._open.wait()
            if self._stopping:
                self.queue.done(name)
                break
            if name not in self.generation.engine.nodes():
                log.info("not a node of the running deployment: ignored", node=name)
                self.queue.done(name)
                continue
            self._tasks[name] = asyncio.create_task(self._reconcile(name), name=f"node:{name}")

    async def _reconcile(self, name: str) -> None:
        generation = self.generation
        engine = generation.engine
        self.reconciles += 1
        refresh = name in self._refresh_due
        self._refresh_due.discard(name)
        try:
            if (held := self.held_for_repair(name)) is not None:
                result: Action = Stopped(held)  # not driven: retrying it would redo the step by itself
            else:
                result = await engine.drive_node(name, refresh=refresh)
        except (OrchestratorError, OSError) as exc:
            failures = self._failures[name] = self._failures.get(name, 0) + 1
            delay = self._backoff(failures)
            log.error("reconcile failed", node=name, error=str(exc), retry_in_s=delay)
            self.queue.add_after(name, delay)
        else:
            self.results[name] = result
            log.debug("reconciled", node=name, result=type(result).__name__, state=engine.state_of(name))
            self._schedule(name, result, engine.state_of(name))
            if generation.deployment.profile == "contingency" and not self._stopping:
                await self._standby(generation, result)
        finally:
            self._tasks.pop(name, None)
            self.queue.done(name)
            if name == generation.deployment.management.name and not self._stopping:
                blocked, self._blocked = self._blocked, set()
                for other in blocked:
                    self.queue.add(other)

    async def _standby(self, generation: Generation, result: Action) -> None:
        """A contingency deployment's VMs off once every node is built, as ``run`` ends it.

        Once after the start, a reload, or any node driven again; a failure is tried at the next resync.
        """
        if not isinstance(result, Done):
            self._standby_due = True
            return
        if not self._standby_due or set(generation.engine.nodes().values()) != {LDAP_AUTHENTICATED}:
            return  # a model is never behind its journal row: not built here is not built there
        async with self._standby_lock:
            # Decided on the journal, as the power-off itself decides, and only then marked done: the models
            # run ahead of the journal while a node's last commit is in flight (``standby_ready``). Marked done
            # on the models, this reconcile powered nothing off and the last node's own, ending once its
            # commit landed, found the power-off done already: the standby stayed on for good.
            if not self._standby_due or not standby_ready(generation.deployment, self.journal):
                return
            self._standby_due = False
            try:
                failed = await generation.engine.standby(self.names_of(generation.deployment))
            except (OrchestratorError, OSError) as exc:
                failed = {"deployment": str(exc)}
            for node, why in failed.items():
                self._standby_due = True
                log.error("standby power-off failed; tried again at the next resync", node=node, error=why)

    def _schedule(self, name: str, result: Action, state: str) -> None:
        """When to look at the node again, from what the planner answered."""
        if isinstance(result, Done):
            self._failures.pop(name, None)
        elif isinstance(result, (Wait, Held)):
            self.queue.add_after(name, self.deployment.daemon.gate_recheck_s)
        elif isinstance(result, Blocked):
            self._blocked.add(name)
        elif isinstance(result, Stopped) and state == FAILED and self.held_for_repair(name) is not None:
            # Looked at again only once repaired: stop the daemon, run the repair command, start it.
            log.error("node failed on drift: not retried until repaired", node=name, error=result.reason)
        elif isinstance(result, Stopped) and state == FAILED and not self._stopping:
            failures = self._failures[name] = self._failures.get(name, 0) + 1
            delay = self._backoff(failures)
            log.warning("node failed: retried later", node=name, reason=result.reason, retry_in_s=delay)
            self.queue.add_after(name, delay)
        # else stopped by a reload or a shutdown: the reload queues every node again

    def _backoff(self, failures: int) -> float:
        return float(min(BACKOFF_S * 2 ** (failures - 1), self.deployment.daemon.resync_s))

    # --- inputs -------------------------------------------------------------------------

    def notice(self, name: str, why: str, *, refresh: bool = False) -> bool:
        """An event names ``name``: queue it now (a failed node is retried at once). False: not a node.

        ``refresh``: its world changed (its VM changed or left): re-observe what is done first.
        """
        if name not in self.generation.engine.nodes():
            return False
        log.debug("node event", node=name, why=why)
        if refresh:
            self._refresh_due.add(name)
        self.queue.add(name)
        return True

    def resync(self) -> None:
        """Queue every node, each re-observed first: drift is journaled and acted on as ``run`` does.

        vSphere's kept briefs are read afresh once, by the first lookup of the pass: a VM changed behind
        the inventory watch's back (or with no watch) is seen at the latest here."""
        self.generation.systems.vsphere.resync()
        self._queue_all()

    def held_for_repair(self, name: str) -> str | None:
        """Why a failed node waits for an operator (its drift is not reversible), or None."""
        if self.generation.engine.state_of(name) != FAILED:
            return None
        failed = self.journal.last_event(name, kind=kinds.STEP_FAILED)
        if failed is None or (failed.payload or {}).get("cause") != "drift":
            return None
        return str((failed.payload or {}).get("error") or "failed on drift")

    async def reload(self, why: str) -> bool:
        """Read the deployment file again; run it when it passes the checks (True), else keep the running one."""
        async with self._reload_lock:
            current = self.deployment
            try:
                deployment = load_deployment(self.session.settings)
                assert deployment is not None  # required: a missing file raised
                register_secrets(deployment)
                _check_same_place(current, deployment)
            except ConfigError as exc:
                log.error("configuration refused: the running deployment is unchanged", why=why, error=str(exc))
                return False
            if deployment.source_sha256 == current.source_sha256:
                log.info("configuration unchanged", why=why)
                return False
            systems = open_systems(deployment, self.session.world, journal=self.session.journal_path)
            try:
                if self._preflight is not None:
                    await self._preflight(deployment, systems)
            except (ConfigError, AdapterError) as exc:
                await systems.aclose()
                log.error("configuration refused: the running deployment is unchanged", why=why, error=str(exc))
                return False
            await self._drain()
            old = self.generation
            if old.owned:
                await old.systems.aclose()
            engine = self._engine(deployment, systems)
            self._generation = Generation(deployment, systems, engine, True)
            self._take_leases(set(self.names_of(deployment)) - set(self.names_of(current)))
            removed = sorted(set(self.names_of(current)) - set(self.names_of(deployment)))
            if removed:
                log.warning("nodes no longer in the deployment file: not driven (their journal is kept)", nodes=removed)
            log.info("configuration reloaded", why=why, nodes=len(deployment.nodes))
            self.reloaded.set()
            self._standby_due = True
            self._open.set()
            self._queue_all()
            return True

    def _take_leases(self, names: set[str]) -> None:
        timeout = self.deployment.journal.lease_timeout_s
        for name in sorted(names):
            try:
                self.journal.acquire_leases([name], owner=self.owner, pid=os.getpid(), timeout_s=timeout)
            except ResourceLocked as exc:
                log.error("new node held by another process: not driven until it is free", node=name, error=str(exc))

    async def _drain(self) -> None:
        """Stop starting steps and wait for the reconciles in flight (each step commits, or stays started)."""
        self._open.clear()
        self.generation.engine.stop()
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def stop(self) -> None:
        """Shut down: no new step starts, the steps in flight finish, the leases are released."""
        self._stopping = True
        self.queue.close()
        if self._generation is not None:
            await self._drain()
            if self._generation.owned:
                await self._generation.systems.aclose()
        self._open.set()  # the loop wakes and ends
        self.journal.release_leases(self.owner)

    def interrupt(self) -> None:
        """A second signal: stop the steps in flight now (each stays started: the next start redoes it)."""
        for task in list(self._tasks.values()):
            task.cancel()

    def statistics(self) -> dict[str, Any]:
        return {"reconciles": self.reconciles, "in_flight": len(self._tasks), **self.queue.statistics()}


def _check_same_place(current: Deployment, new: Deployment) -> None:
    """A reload keeps the deployment, its journal and its simulated world: the daemon holds them open."""
    problems = [
        (field, f"changed from {before!r} to {after!r}; {fix}")
        for field, before, after, fix in (
            ("deployment.name", current.name, new.name, "a journal holds one deployment: put it back"),
            ("journal.path", current.journal.path, new.journal.path, "restart the daemon to use another journal"),
            ("simulation.world", current.simulation.world, new.simulation.world, "restart the daemon for it"),
        )
        if before != after
    ]
    if problems:
        raise ConfigError(problems)
