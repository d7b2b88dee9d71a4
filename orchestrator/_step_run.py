"""One step of one node, under the crash-safety protocol of DESIGN.md, and the journaled transitions.

``StepRunner`` is the engine's base: it owns what a step needs (the deployment, the adapters,
the concurrency slots, the gates, the history and the models) and carries out one
``RunStep`` to its commit: ``step_started`` durable before any side effect (a barrier right
before it), the step's observe -> diff -> (gate) -> apply -> verify, then ``step_committed`` and the
node's next step, journaled together at the next barrier, retrying retryable errors with the
policy's backoff. ``engine.Engine`` adds the run loop (which node does what next, leases, resumes).
"""

from __future__ import annotations

import asyncio
import random
import traceback
from collections.abc import Callable
from typing import Any

import structlog

from adapters.base import Systems
from config.errors import AdapterError, NotYet, OrchestratorError
from config.model import Deployment
from journal import Journal, Transition, kinds
from machines.lifecycle import LDAP_AUTHENTICATED, STEPS
from machines.node import Fleet, NodeModel
from machines.plan import RunStep, Start
from orchestrator import steps as step_impls
from orchestrator._commit import GroupCommitter, Slots
from orchestrator._first_use import pin_journaled, trust_transitions
from orchestrator._fsm import build_machine
from orchestrator._gates import Gates
from orchestrator._history import History, applied_changes
from orchestrator._journaled import Journaled
from orchestrator._report import FaultHooks
from orchestrator.clock import Clock
from orchestrator.steps.base import StepContext

__all__ = ["StepRunner"]

log = structlog.get_logger("orchestrator.engine")


class StepRunner(Journaled):
    """Runs the steps of a deployment's nodes and commits their transitions (the base of ``Engine``)."""

    def __init__(
        self,
        deployment: Deployment,
        journal: Journal,
        systems: Systems,
        *,
        clock: Clock,
        actor: str,
        auto_approve: bool,
        hooks: FaultHooks | None,
        observer: Callable[[str, str, str | None, str], None] | None,
        max_concurrency: int | None,
        gate_poll_s: float,
        seed: int | None,
    ) -> None:
        self.deployment = deployment
        self.journal = journal
        self.systems = systems
        self.clock = clock
        self.actor = actor
        self.hooks = hooks
        self.observer = observer
        self._random = random.Random(seed)
        policy = deployment.policy
        self._retry = policy.retry
        limit = max_concurrency or policy.concurrency.max_nodes
        # On the event loop: a group commit in a worker thread (tried for issue #11, perf7 and race1) made more
        # transactions (100 nodes: 74 -> 92) and a slower run (1000 nodes: 11.0 -> 12.0 s), so it was taken out.
        self._committer = GroupCommitter(journal.commit_seqs, written=self._written, take=self._take_deferred)
        # A node waiting for a slot cannot join a transaction soon: the commit window does not wait for it.
        self._global: asyncio.Semaphore = Slots(limit, self._committer)
        self._per_host: dict[str, asyncio.Semaphore] = {
            h.name: Slots(h.max_concurrent, self._committer) for h in deployment.vcenter.hosts
        }
        self._machine = build_machine()
        self._fleet = Fleet()
        self._models: dict[str, NodeModel] = {}
        self._changed = asyncio.Condition()
        self._stopping = False
        self._until = LDAP_AUTHENTICATED  # the run's target (``run --until``)
        # A step whose step_started went into the previous commit's transaction (node -> step),
        # and the nodes that keep their global slot into it.
        self._prestarted: dict[str, str] = {}
        self._holding: set[str] = set()
        self._deferred: list[Transition] = []
        self._ahead: set[int] = set()
        self._deferred_at = 0.0
        self._defer_timer: asyncio.TimerHandle | None = None
        self._lost_unsaid = False
        self._history = History({})
        pin_journaled(journal, systems)  # keys trusted on first use by earlier runs: pinned from now on
        self._gates = Gates(
            deployment,
            journal,
            systems,
            self._defer,
            self.clock,
            barrier=self._barrier,
            actor=actor,
            auto_approve=auto_approve,
            poll_s=gate_poll_s,
        )

    # --- steps ---------------------------------------------------------------------------

    async def _run_step(self, model: NodeModel, action: RunStep, step: step_impls.Step) -> bool:
        """Run one step to its commit, retrying retryable errors with backoff.

        Each attempt holds one of the global slots (``concurrency.max_nodes``) from its
        ``step_started`` to its commit; the backoff sleeps between attempts hold none.

        Returns:
            Whether the commit started the next step: it read the node's maintenance for that just before.
        """
        max_attempts = self._retry.max_attempts
        waited_since: float | None = None
        # The retry budget counts this process's failures; model.attempt (journaled, part of
        # the idempotency key) also counts starts cut short by crashes, which are no failures.
        failures = 0
        retries = 0
        while True:
            record: dict[str, Any] = {}  # the attempt's scratch: which changes it began and applied
            if model.name in self._holding:
                self._holding.discard(model.name)  # the slot the previous step handed over
            else:
                await self._global.acquire()
            handed_over = False
            try:
                try:
                    outcome = await self._attempt(model, action, step, record)
                except AdapterError as exc:
                    if isinstance(exc, NotYet):
                        # Waiting for the world (a node syncing) is bounded by time, not attempts.
                        waited_since = self.clock.monotonic() if waited_since is None else waited_since
                        patience = self._retry.wait_timeout_s
                        keep_waiting = self.clock.monotonic() - waited_since < patience
                        if not keep_waiting:
                            exc = NotYet(f"{exc} (still after {patience:g} s: retry.wait_timeout_s)")
                    else:
                        failures += 1
                        keep_waiting = failures < max_attempts
                    if not (exc.retryable and keep_waiting and not self._stopping):
                        await self._fail(model, action.step, exc, record)
                        return False
                    retries += 1
                    delay = self._backoff(retries)
                    await self._commit(
                        Transition(
                            node=model.name,
                            kind=kinds.STEP_RETRY,
                            step=action.step,
                            attempt=model.attempt,
                            key=self._key(model, action.step),
                            actor=self.actor,
                            payload={"error": str(exc), "retry_in_s": round(delay, 3), **applied_changes(record)},
                            update={"last_error": str(exc)},
                        )
                    )
                    log.info(
                        "step retry",
                        node=model.name,
                        step=action.step,
                        attempt=model.attempt,
                        error=str(exc),
                        delay=delay,
                    )
                except (OrchestratorError, ValueError, OSError) as exc:
                    await self._fail(model, action.step, exc, record)
                    return False
                except Exception as exc:  # a bug: fail the node with the trace in the log, never retry
                    log.error(
                        "step crashed", node=model.name, step=action.step, error=repr(exc), trace=traceback.format_exc()
                    )
                    await self._fail(model, action.step, exc, record)
                    return False
                else:
                    if outcome is not None:
                        handed_over = await self._commit_step(model, action, outcome)
                    return handed_over  # committed, or waiting on a gate (the node is in its waiting state)
            finally:
                if handed_over:
                    self._holding.add(model.name)  # the next step, already started, runs under this slot
                else:
                    self._global.release()
            await self.clock.sleep(delay)

    async def _attempt(
        self, model: NodeModel, action: RunStep, step: step_impls.Step, record: dict[str, Any]
    ) -> step_impls.Outcome | None:
        """Journal ``step_started`` (durable before any side effect), then run the step (None: it waits on a gate)."""
        if self._prestarted.pop(model.name, None) != action.step:
            attempt = (model.attempt or 0) + 1
            await self._defer(
                Transition(
                    node=model.name,
                    kind=kinds.STEP_STARTED,
                    step=action.step,
                    attempt=attempt,
                    key=self._key(model, action.step, attempt),
                    from_state=model.state,
                    to_state=model.state,
                    actor=self.actor,
                    update={"step": action.step, "attempt": attempt, "last_error": None},
                )
            )
        # else: its step_started was journaled with the previous step's commit
        ctx = StepContext(
            self.deployment,
            self.deployment.node(model.name),
            self.systems,
            gate_payload=self._gates.payload(model.name, step.name),
            scratch=record,
            renew=step.name == "create_csr" and self._renewal_asked(model.name),
        )
        try:
            return await self._execute(model, step, ctx)
        finally:
            # A key the attempt trusted on first use is journaled whatever became of the attempt.
            if trusted := trust_transitions(self.systems, model.name, action.step, self.actor):
                await self._commit_all(trusted)

    def _renewal_asked(self, node: str) -> bool:
        """``orchestrator cert renew`` asked for a renewal CSR (its ``rewound`` event) and ``create_csr`` has not
        committed since: read from the journal, so a crash before the CSR is made still renews on resume."""
        if self.journal.latest_kind(node, (kinds.REWOUND,)) is None:
            return False  # never rewound: known without the writer's lock (issue #11)
        rewound = self.journal.last_event(node, kind=kinds.REWOUND)
        if rewound is None or not rewound.payload.get("renew"):
            return False
        return not any(
            e.seq > rewound.seq and e.step == "create_csr"
            for e in self.journal.events(node=node, kinds=[kinds.STEP_COMMITTED])
        )

    async def _commit_step(self, model: NodeModel, action: RunStep, outcome: step_impls.Outcome) -> bool:
        """``step_committed`` and the node's next step or milestone, deferred together (to the next barrier).

        Its ``changed`` lists every change of the step's attempts, the failed ones first. A milestone
        completes only when each of its steps committed in this attempt of it; else the node goes
        on with the first step that did not (the row was trusted over the events, or a bug).

        The same transaction starts what comes next when nothing stands in between (no stop, no
        maintenance, the planner's next action a start): the next step's ``step_started``, or at a
        milestone's end the next milestone's ``milestone_started`` and its first ``step_started``.
        They become durable with the next step's start at the barrier before its first side effect:
        one durable commit per step that changes the world, none for one that finds it right (issue #11).

        Returns:
            Whether a next step was started: the caller hands its concurrency slot on to it.
        """
        if outcome.not_settable:  # journaled in the payload too: the guide's value could not be applied
            log.warning(
                "not settable on this version",
                node=model.name,
                step=action.step,
                settings=list(outcome.not_settable),
                why="the Manager's /schema/ does not list them as writable (ignored by this version)",
            )
        steps = STEPS[model.role][action.milestone]
        payload = {
            **outcome.payload(),
            "changed": [*self._history.earlier_changes(model.name, action.step), *outcome.payload()["changed"]],
        }
        self._gates.consume(model.name, action.step)
        missing = self._history.missing(model.name, action.milestone, action.step) if action.last else []
        if action.last and not missing:
            transitions = [
                await self._fired(
                    model,
                    "complete",
                    kind=kinds.STEP_COMMITTED,
                    step=action.step,
                    payload=payload,
                    attempt=0,
                    update={"step": None, "attempt": 0, "last_error": None},
                    finished=action.step,
                    committed=self._history.committed(model.name) | {action.step},
                )
            ]
            reached = model.state
            following = None
            if self._may_go_on(model) and isinstance(next_ := self.plan(model), Start):
                following = STEPS[model.role][next_.milestone][0]
                transitions.append(
                    await self._fired(model, "start", kind=kinds.MILESTONE_STARTED, step=following, attempt=0)
                )
                transitions.append(self._started(model, following))
            await self._defer_all(transitions)
            log.debug("milestone reached", node=model.name, state=reached)
            return following is not None
        if missing:
            log.error("milestone incomplete", node=model.name, milestone=action.milestone, missing=missing)
            payload["milestone_incomplete"] = missing
        following = missing[0] if missing else steps[steps.index(action.step) + 1]
        committed = Transition(
            node=model.name,
            kind=kinds.STEP_COMMITTED,
            step=action.step,
            attempt=0,
            key=self._key(model, action.step),
            from_state=model.state,
            to_state=model.state,
            actor=self.actor,
            payload=payload,
            update={"step": following, "attempt": 0, "last_error": None},
        )
        go_on = self._may_go_on(model)
        await self._defer_all([committed, self._started(model, following)] if go_on else [committed])
        return go_on

    async def _execute(self, model: NodeModel, step: step_impls.Step, ctx: StepContext) -> step_impls.Outcome | None:
        """The step's observe -> diff -> (gate) -> apply -> verify, under the concurrency limits.

        A host's slot (its side effects at once) is taken after the barrier, for the apply and its verify: a
        slot held while the barrier waits for its transaction made the nodes of a host commit one by one.
        """
        host_slot = self._per_host.get(ctx.node.host) if step.per_host else None
        held: list[asyncio.Semaphore] = []

        async def gate_open(changes: list[step_impls.Change]) -> bool:
            gate = await self._gates.closed(model.name, step, ctx, changes)
            if gate is not None:
                # What the gate's opener checks against (the CSR a certificate must match), when the step says.
                await self._transition(
                    model,
                    "wait",
                    kind=kinds.GATE_WAITING,
                    step=step.name,
                    gate=gate,
                    update={"gate": gate},
                    payload={
                        "gate": gate,
                        "changes": [c.as_dict() for c in changes],
                        **ctx.scratch.get("gate_record", {}),
                    },
                )
            else:
                ctx.scratch["attempting"] = changes
                await self._barrier()  # the step's start (and what came before it) on disk before its side effect
                if host_slot is not None:
                    await host_slot.acquire()
                    held.append(host_slot)
            return gate is None

        def applied() -> None:
            ctx.scratch["applied"] = True
            if self.hooks:
                self.hooks.after_apply(model.name, step.name)

        try:
            if self.hooks:
                self.hooks.before_step(model.name, step.name)
            return await step_impls.execute(step, ctx, before_apply=gate_open, after_apply=applied)
        finally:
            for slot in held:
                slot.release()

    async def _pass_gate(self, model: NodeModel, gate: str) -> bool:
        """A node in a waiting state: back to its step once the gate is open (False: not now)."""
        step = step_impls.STEPS[model.step] if model.step else None
        try:
            opened = await self._gates.wait(model.name, step, gate, stopping=lambda: self._stopping)
        except AdapterError as exc:  # not retryable (Gates.wait): the answer at the gate was refused
            await self._fail(model, model.step or gate, exc, {})
            return False
        if opened is None:
            return False
        await self._transition(
            model, "open_gate", kind=kinds.GATE_PASSED, step=model.step, payload={"gate": gate}, update={"gate": None}
        )
        return True

    async def _fail(self, model: NodeModel, step: str, exc: BaseException, record: dict[str, Any]) -> None:
        reason = f"{step}: {exc}"
        log.error("step failed", node=model.name, step=step, attempt=model.attempt, error=str(exc))
        await self._transition(
            model,
            "fail",
            kind=kinds.STEP_FAILED,
            step=step,
            reason=reason,
            payload={
                "error": str(exc),
                "error_type": type(exc).__name__,
                "retryable": getattr(exc, "retryable", False),
                **applied_changes(record),
            },
            update={"last_error": reason, "failed_from": model.state},
        )

    def _backoff(self, attempt: int) -> float:
        return self._retry.backoff(attempt, self._random)
