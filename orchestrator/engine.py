"""The engine: one asyncio task per node, driving it through the lifecycle.

For each node it asks the pure planner (``machines.plan.next_action``) what comes
next, and carries it out under the crash-safety protocol of DESIGN.md:

1. journal ``step_started`` (durable) before any side effect;
2. the step observes the world and changes only what differs, then verifies;
3. journal ``step_committed`` and the node's new state in one transaction.

Durable means on disk before the side effect: the barrier right before it writes every transition
deferred since (``_journaled``), so a step that changes nothing costs no transaction of its own.
A step started but not committed runs again on resume, observing first: nothing is done twice.
The run loop is here; one step to its commit (and every journaled transition) is in ``_step_run``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from adapters.base import Systems
from config.errors import ConfigError, TransitionError
from config.model import Deployment
from config.rules import heartbeat_period
from journal import Journal, Transition, kinds, new_lease_owner
from machines.lifecycle import FAILED, LDAP_AUTHENTICATED, NEW, STEPS, TRANSIENT_OF
from machines.node import NodeModel
from machines.plan import Action, Blocked, Done, Held, RunStep, Start, Stopped, Wait
from orchestrator import steps as step_impls
from orchestrator._drift import Reconciler
from orchestrator._history import History, maintenance_of
from orchestrator._report import FaultHooks, RunReport
from orchestrator._standby import power_off_standby
from orchestrator.clock import Clock, SystemClock

__all__ = ["Engine", "RunReport", "FaultHooks"]

log = structlog.get_logger("orchestrator.engine")

# How long a commit waits for the other nodes' commits while several nodes move (group commit).
COMMIT_WINDOW_S = 0.01


class Engine(Reconciler):
    """Drives the nodes of one deployment.

    Args:
        deployment: the validated deployment.
        journal: the open journal (definition already checked).
        systems: the adapters, real or simulated.
        clock: time source for backoff (a fake one in tests).
        auto_approve: open approval gates by itself (``simulate`` only), journaled as such.
        hooks: fault injection of the simulated world.
        observer: called after every committed transition (progress display).
    """

    def __init__(
        self,
        deployment: Deployment,
        journal: Journal,
        systems: Systems,
        *,
        clock: Clock | None = None,
        actor: str = "orchestrator",
        auto_approve: bool = False,
        hooks: FaultHooks | None = None,
        observer: Callable[[str, str, str | None, str], None] | None = None,
        max_concurrency: int | None = None,
        gate_poll_s: float = 30.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            deployment,
            journal,
            systems,
            clock=clock or SystemClock(),
            actor=actor,
            auto_approve=auto_approve,
            hooks=hooks,
            observer=observer,
            max_concurrency=max_concurrency,
            gate_poll_s=gate_poll_s,
            seed=seed,
        )
        self.owner = new_lease_owner()
        self._active: set[str] = set()
        self._committer.window_s = COMMIT_WINDOW_S
        self._committer.writers = lambda: len(self._active)

    # --- set-up -------------------------------------------------------------------------

    def load(self) -> None:
        """Register the deployment's nodes and rebuild every model from the journal's events.

        Raises:
            IntegrityError: a node row differs from what its events say (it was edited).
        """
        self.journal.ensure_nodes((n.name, n.role, NEW) for n in self.deployment.nodes)
        self._history = History({n.name: n.role for n in self.deployment.nodes})
        names = {n.name for n in self.deployment.nodes}
        derived = self._history.load(self.journal.events(), [r for r in self.journal.nodes() if r.name in names])
        for spec in self.deployment.nodes:
            r = derived[spec.name]
            m = self._models[spec.name] = NodeModel(spec.name, spec.role, self._fleet, state=r.state)
            m.record(
                {
                    "step": r.step,
                    "attempt": r.attempt,
                    "failed_from": r.failed_from,
                    "last_error": r.last_error,
                    "gate": r.gate,
                    "maintenance": r.maintenance,
                }
            )
            # Each model starts in its journaled state: no transition fires for the restore.
            self._machine.add_model(m, initial=m.state)
        self._fleet.management = self._models[self.deployment.management.name]
        self._gates.load({m.name: m.state for m in self._models.values()})

    def nodes(self) -> dict[str, str]:
        """Each loaded node's state as its model has it: the journal's, or one fired transition ahead of it
        while that transition's commit is pending (never behind); decide on the journal's rows where that matters."""
        return {name: model.state for name, model in self._models.items()}

    def state_of(self, name: str) -> str:
        return self._models[name].state

    def stop(self) -> None:
        """Stop starting new steps; the steps in flight finish (SIGINT/SIGTERM)."""
        self._stopping = True

    # --- running ------------------------------------------------------------------------

    async def run(
        self,
        nodes: Sequence[str] | None = None,
        until: str = LDAP_AUTHENTICATED,
        *,
        retry: Sequence[str] = (),
        from_step: str | None = None,
        renew: bool = False,
        recap_follows: bool = False,
    ) -> RunReport:
        """Drive ``nodes`` (default: all) to ``until`` under their leases.

        Args:
            retry: failed nodes to put back where they failed first (``resume``).
            from_step: rewind the ``retry`` nodes to this step first (``resume --from-step``).
            renew: with ``from_step = "create_csr"``: the rewind asks for a renewal CSR from the
                installed certificate (``orchestrator cert renew``), journaled in its ``rewound`` event.
            recap_follows: the caller commits the run's recap at once: the leases' release and the transitions
                deferred since the last barrier (the last step's commit) ride in its transaction, with the closing
                checkpoint (``api.drive``; :meth:`journal.Journal.hold`; a crash in between leaves a stale lease,
                cleared as any, and the last step started, committed again from observe on resume).
        """
        if not self._models:
            self.load()
        names = list(nodes) if nodes else [n.name for n in self.deployment.nodes]
        unknown = [n for n in [*names, *retry] if n not in self._models]
        if unknown:
            raise ConfigError([("NODE", f"unknown node(s) {unknown}; known: {sorted(self._models)}")])
        self.journal.acquire_leases(
            names, owner=self.owner, pid=os.getpid(), timeout_s=self.deployment.journal.lease_timeout_s
        )
        self._until = until
        report = RunReport()
        # The beat holds the journal, never the Engine: a cancelled task lives until the loop next runs it,
        # and this one's `self` kept every NodeModel through the recap and the closing checkpoint (#11).
        heartbeat = asyncio.create_task(_heartbeat(self.journal, self.owner, self.deployment.journal.lease_timeout_s))
        try:
            await self._prepare_resume(retry, from_step, renew)
            self._active = set(names)
            tasks = [asyncio.create_task(self._drive(self._models[name], until), name=f"node:{name}") for name in names]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for name, result in zip(names, results, strict=True):
                if isinstance(result, asyncio.CancelledError):
                    # A second signal: the step in flight stays journaled as started.
                    result = Stopped(
                        "interrupted at once: the step in flight is redone from observe on `orchestrator resume --all`"
                    )
                elif isinstance(result, BaseException):
                    raise result
                report.outcomes[name] = result
            # The finished tasks stay alive as long as the callback that resumed this coroutine runs
            # (its argument, the gather's future, holds them): here to the next suspension, past the
            # recap and the record of it, ~0.6 KB per node at the run's peak (#11). Resume once more.
            del tasks, results
            await asyncio.sleep(0)
            if recap_follows:
                self.journal.hold()  # the last deferred transitions ride in the recap's transaction
            self._settle()  # the rows as the models have them: the standby decides on the rows
            if not self._stopping and until == LDAP_AUTHENTICATED:
                report.outcomes.update({name: Stopped(why) for name, why in (await self.standby(names)).items()})
            report.interrupted = self._stopping
            report.blocked_by = self._blocker(report, until)
        finally:
            heartbeat.cancel()
            if recap_follows:
                self.journal.hold()
            self._settle()
            self.journal.release_leases(self.owner)
        return report

    def _blocker(self, report: RunReport, until: str) -> tuple[str, Action] | None:
        """What the blocked nodes of ``report`` wait for: the Management Node and its outcome or next action."""
        manager = self._fleet.management
        if manager is None or not report.blocked:
            return None
        if manager.name in report.outcomes:
            return manager.name, report.outcomes[manager.name]
        manager.record({"maintenance": maintenance_of(self.journal, manager.name)})
        return manager.name, self.plan(manager, until)

    async def standby(self, names: Sequence[str]) -> dict[str, str]:
        """A contingency deployment ends as a standby: the VMs of ``names`` off, once every node is built.

        Returns ``{node: why}`` for each VM not powered off (``orchestrator._standby``); nothing to do: empty.
        """
        return await power_off_standby(
            self.deployment, self.journal, self.systems, self._commit, names, actor=self.actor
        )

    async def drive_node(self, name: str, until: str = LDAP_AUTHENTICATED, *, refresh: bool = True) -> Action:
        """Drive one node to ``until`` under a lease its caller already holds (the daemon's reconciler).

        The same drive as :meth:`run`, one node at a time: a failed node is put back where it
        failed first (journaled as ``retried``). Its result is what the planner says next.
        ``refresh``: first re-observe its completed milestones and act on drift, as ``run`` does
        (false: the daemon's re-check of a gate, which need not read every system again).
        """
        model = self._models[name]
        self._until = until
        if model.state == FAILED:
            await self._prepare_resume([name], None)
        self._active.add(name)
        try:
            action = await self._drive(model, until, refresh=refresh)
        except BaseException:
            self._settle()  # what was journaled so far is on disk before the error goes on
            raise
        await self._barrier()  # the daemon's other parts (its standby, status) read the rows
        return action

    async def _prepare_resume(self, names: Sequence[str], from_step: str | None, renew: bool = False) -> None:
        """Failed nodes go back where they failed; ``from_step`` rewinds to a given step (journaled)."""
        rewound: dict[str, Any] = {"from_step": from_step, **({"renew": True} if renew else {})}
        for name in names:
            model = self._models[name]
            if from_step is not None:
                milestone = next((m for m, s in STEPS[model.role].items() if from_step in s), None)
                if milestone is None:
                    known = [s for steps in STEPS[model.role].values() for s in steps]
                    raise ConfigError(
                        [("--from-step", f"{from_step!r} is not a step of a {model.role} node; steps: {known}")]
                    )
                update = {"step": from_step, "attempt": 0, "gate": None, "last_error": None, "failed_from": None}
                if model.state == TRANSIENT_OF[milestone]:
                    await self._commit(
                        Transition(
                            node=name,
                            kind=kinds.REWOUND,
                            step=from_step,
                            actor=self.actor,
                            from_state=model.state,
                            to_state=model.state,
                            payload=rewound,
                            update=update,
                        )
                    )
                else:
                    try:
                        await self._transition(
                            model,
                            "rewind",
                            kind=kinds.REWOUND,
                            step=from_step,
                            update=update,
                            payload=rewound,
                        )
                    except TransitionError as exc:
                        raise ConfigError(
                            [("--from-step", f"{name} is at {model.state}; it cannot go forward to {from_step}")]
                        ) from exc
            elif model.state == FAILED:
                await self._transition(
                    model,
                    "retry",
                    kind=kinds.RETRIED,
                    step=model.step,
                    update={"last_error": None, "failed_from": None, "attempt": 0},
                )

    async def _drive(self, model: NodeModel, until: str, *, refresh: bool = True) -> Action:
        try:
            # The journal says what was done; a refresh checks that the world still says so (issue #10).
            model.record({"maintenance": maintenance_of(self.journal, model.name)})
            stopped = await self.reconcile(model) if refresh else None
            if stopped is not None:
                return stopped
            # Whether the node's maintenance was read just now, nothing awaited since: the commit (or start) that
            # started its next step read it for that (``_may_go_on``), and a second read would be the same question
            # a moment later (one PRAGMA per step, ~3 % of a simulation's CPU, issue #11).
            fresh = not refresh
            while True:
                # `orchestrator maintenance NODE on` from another process: honoured before the next step.
                if not fresh:
                    model.record({"maintenance": maintenance_of(self.journal, model.name)})
                fresh = False
                action = self.plan(model, until)
                if not isinstance(action, RunStep) and model.name in self._holding:
                    self._release_slot(model)  # the started step does not run now: its slot goes back
                if isinstance(action, (Done, Held, Stopped)):
                    return action
                if self._stopping:
                    return Stopped("interrupted: stopped before the next step; run `orchestrator resume --all`")
                if isinstance(action, Blocked):
                    if not await self._wait_for_management(model, until):
                        return self.plan(model, until)
                    continue
                if isinstance(action, Start):
                    # Under a global slot too: a thousand nodes starting at once (the Manager
                    # hardened) would otherwise all sit inside the machine's trigger together.
                    await self._global.acquire()
                    try:
                        await self.start_milestone(model, action.milestone)
                    finally:
                        if model.name in self._prestarted:
                            self._holding.add(model.name)  # its first step, started, runs under this slot
                            fresh = True
                        else:
                            self._global.release()
                    continue
                if isinstance(action, Wait):
                    if not await self._pass_gate(model, action.gate):
                        return self.plan(model, until)
                    continue
                if isinstance(action, RunStep):
                    # Every lifecycle step has an implementation (checked at import): no KeyError here.
                    fresh = await self._run_step(model, action, step_impls.STEPS[action.step])
                    continue
                raise RuntimeError(f"unhandled action {action!r}")
        finally:
            self._prestarted.pop(model.name, None)  # a later run journals its own start
            if model.name in self._holding:
                self._release_slot(model)
            self._active.discard(model.name)
            self._committer.writer_gone()
            async with self._changed:
                self._changed.notify_all()

    def _release_slot(self, model: NodeModel) -> None:
        self._holding.discard(model.name)
        self._global.release()

    async def _wait_for_management(self, model: NodeModel, until: str) -> bool:
        """Wait while the Management Node is being driven; False when it is not (or stopped)."""
        manager = self._fleet.management
        async with self._changed:
            while isinstance(self.plan(model, until), Blocked):
                if manager is None or manager.name not in self._active or self._stopping:
                    return False
                await self._committer.parked(self._changed.wait())  # a commit's window does not wait for it
        return True


async def _heartbeat(journal: Journal, owner: str, lease_timeout_s: float) -> None:
    period = heartbeat_period(lease_timeout_s)  # the rule config validates
    while True:
        await asyncio.sleep(period)
        journal.heartbeat(owner)
