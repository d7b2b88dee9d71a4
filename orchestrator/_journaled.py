"""The engine's journaled transitions: commit, then keep each node's model as the journal has it.

``Journaled`` is a base of ``_step_run.StepRunner`` (and so of ``engine.Engine``): every change of a
node's state goes through :meth:`Journaled._commit_all` (or :meth:`Journaled._defer_all`), which applies
the same update to the journal row (in one transaction) and to the model. One window is not closed: a fired trigger
(:meth:`Journaled._fire`) moves the model to its new state *before* the transition that journals it
is committed, so while that commit is pending (the group commit's window, a slow fsync) a model may
be ahead of its row, never behind it. Code that decides on another node's state (the daemon's
contingency power-off, race1) must read the journal rows: ``orchestrator._standby.standby_ready``.

Most transitions need no durability of their own, only before the next side effect (issue #11):
a step's start, a step's commit with the next one's start, a milestone's start, a gate opened.
:meth:`Journaled._defer_all` applies them to the models at once and keeps them for the next
transaction; :meth:`Journaled._barrier` (right before a side effect) and every durable commit
write every deferred transition first, in order, so that nothing is done before all that was
journaled before it is on disk. A step that finds the world right (no side effect) so costs no
transaction; after a crash such a step, and one whose commit had not reached the disk, is run
again from observe: its effect is seen done and committed without being repeated.

Deferral is bounded in time: what another process reads (``orchestrator status``) would otherwise lag a long run
of steps that change nothing (seconds each on real systems) until its next barrier. The deferred transitions are
written at the latest :data:`DEFER_MAX_S` after the first of them was deferred, by a flush that no step waits for
(:meth:`Journaled._defer_due`), in order: in the group committer's pending flush, else as that flush writes them; a
barrier that takes them first leaves it nothing to do.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import structlog

from config.errors import JournalError
from config.model import Deployment
from journal import Journal, Transition, kinds
from machines.lifecycle import MANAGEMENT_STEP_PREREQUISITE, STEPS
from machines.node import Fleet, NodeModel
from machines.plan import Action, next_action
from orchestrator._commit import GroupCommitter
from orchestrator._fsm import fire
from orchestrator._history import History, maintenance_of

_AWAITED = frozenset(MANAGEMENT_STEP_PREREQUISITE.values())  # the Manager's steps a Conferencing Node waits for

__all__ = ["DEFER_MAX_S", "Journaled"]

log = structlog.get_logger("orchestrator.engine")

# How long a deferred transition may wait for a barrier before a flush of its own writes it. A person reading
# `orchestrator status` sees a no-change stretch within about a second; the price is at most one durable
# transaction a second (a few ms of fsync), and none while steps change the world: their barriers come sooner
# (a step at latency 0 takes ~1 ms). Not a window the committer waits in: no step is held by it.
DEFER_MAX_S = 1.0


class Journaled:
    """Commits transitions and keeps the models; the state is set up by ``StepRunner.__init__``."""

    deployment: Deployment
    journal: Journal
    actor: str
    observer: Callable[[str, str, str | None, str], None] | None
    _committer: GroupCommitter
    _machine: Any
    _fleet: Fleet
    _models: dict[str, NodeModel]
    _changed: asyncio.Condition
    _stopping: bool
    _until: str
    _prestarted: dict[str, str]
    _history: History
    _deferred: list[Transition]  # journaled at the next barrier or durable commit, in this order
    _ahead: set[int]  # the ids of the deferred transitions not written yet: applied to the models already
    _deferred_at: float  # the loop's time when the first of the deferred transitions was deferred
    _defer_timer: asyncio.TimerHandle | None  # the bound's timer: at most one, re-armed lazily (_defer_due)
    _lost_unsaid: bool  # the bound's flush lost transitions and no caller has raised it yet (_settle does)

    @staticmethod
    def _key(model: NodeModel, step: str, attempt: int | None = None) -> str:
        """The idempotency key of an attempt (default: the model's), journaled with its start, retry and commit."""
        return f"{model.name}:{step}:{model.attempt if attempt is None else attempt}"

    async def _commit(self, transition: Transition) -> None:
        """Commit durably, then keep the node's model as the journal now has it."""
        await self._commit_all([transition])

    async def _commit_all(self, transitions: list[Transition]) -> None:
        """Commit ``transitions`` in one transaction (all or none) after every deferred one; each is applied to its
        model as it is written (:meth:`_written`)."""
        await self._write([*self._take_deferred(), *transitions])
        await self._notify(transitions)

    async def _defer(self, transition: Transition) -> None:
        """:meth:`_defer_all` of one transition."""
        await self._defer_all([transition])

    async def _defer_all(self, transitions: list[Transition]) -> None:
        """Apply ``transitions`` to the models now; journal them in the next transaction, at the latest at the next
        :meth:`_barrier` (before the next side effect) or at the run's end. For what must be durable before a side
        effect, never for what another process must see while this one waits (a gate waited on: :meth:`_commit`)."""
        self._check_lost()  # after a timed flush failed: no step goes on as if its records could still be written
        if not self._deferred:
            loop = asyncio.get_running_loop()
            self._deferred_at = loop.time()
            if self._defer_timer is None:
                self._defer_timer = loop.call_later(DEFER_MAX_S, self._defer_due)
        self._deferred.extend(transitions)
        for transition in transitions:
            self._ahead.add(id(transition))
        self._apply(transitions)
        await self._notify(transitions)

    def _defer_due(self) -> None:
        """The bound's timer: deferred transitions older than :data:`DEFER_MAX_S` are written now, by a flush no step
        waits for; younger ones re-arm it for their own deadline.

        One timer at most, which a barrier that takes the transitions does not cancel (per step that would be a timer
        made and cancelled, for a flush that hardly ever comes): it then finds nothing, or younger ones. While the group
        committer has a flush pending, that flush takes them (``GroupCommitter.take``), in order behind what it holds;
        else nothing can come before them and they are written at once, as that flush would write them. A write that
        fails loses them, as a barrier's does (whether its COMMIT reached the disk is not known: writing them again
        could journal a transition twice): the next barrier, commit or deferral refuses (:meth:`_check_lost`), before
        any side effect, else the run's end does (:meth:`_settle`); a resume observes those steps again.
        """
        self._defer_timer = None
        if not self._deferred or self._committer.lost is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._deferred_at + DEFER_MAX_S - loop.time()
        if wait > 0:
            self._defer_timer = loop.call_later(wait, self._defer_due)
        elif not self._committer.pending:
            deferred = self._take_deferred()
            try:
                self.journal.commit_seqs(deferred)  # a hold's records ride in it (and the hold ends: this is durable)
                self._written(deferred)
            except Exception as exc:  # no step waits for this flush: the next barrier, commit or deferral says it
                self._committer.lost, self._lost_unsaid = exc, True
                log.error("deferred transitions' timed flush failed", error=str(exc))

    def _disarm(self) -> None:
        """No timed flush from now on (the run's end: the timer would keep the engine alive past it)."""
        if self._defer_timer is not None:
            self._defer_timer.cancel()
            self._defer_timer = None

    async def _barrier(self) -> None:
        """Every transition journaled so far durable (group-committed): called right before a side effect.

        Also those another caller's commit took and has not written yet: the barrier waits for that flush too.
        """
        if self._deferred or self._committer.pending or self._committer.lost:
            await self._write(self._take_deferred())

    async def _write(self, transitions: list[Transition]) -> None:
        """Group-commit ``transitions``; refused once a failed commit lost deferred ones (the models are ahead of a
        journal that will never have them: nothing more is done, a resume observes again)."""
        self._check_lost()
        try:
            await self._committer.commit_all(transitions)
        except Exception as exc:
            if any(id(t) in self._ahead for t in transitions):
                self._committer.lost = exc
            self._lost_unsaid = False  # raised to this caller
            raise

    def _check_lost(self) -> None:
        if (lost := self._committer.lost) is not None:
            self._lost_unsaid = False
            raise JournalError(
                f"journal {self.journal.path}: a commit failed ({lost}) and took transitions deferred to it along; "
                "this run writes nothing more: `orchestrator resume --all` observes the steps again"
            ) from lost

    def _settle(self) -> None:
        """The deferred transitions written now: in the journal's hold when there is one (they ride in its next
        durable commit, the run's recap), else durable at once. After a lost commit nothing: the run fails already, or
        fails here when only the bound's flush lost them (no step was told)."""
        self._disarm()
        if self._committer.lost is not None:
            self._deferred = []
            if self._lost_unsaid and sys.exc_info()[1] is None:  # an exception on its way out is not replaced
                self._check_lost()
            return
        if self._deferred:
            deferred = self._take_deferred()
            with self.journal.batch():  # inside a hold: a savepoint of it, not the commit that ends it
                self.journal.commit_seqs(deferred)
            self._written(deferred)  # after the batch: an observer may sign a checkpoint, never inside one

    def _take_deferred(self) -> list[Transition]:
        taken, self._deferred = self._deferred, []
        return taken

    def _written(self, transitions: list[Transition]) -> None:
        """The group committer wrote ``transitions`` (in order): apply those not applied ahead to their models, then
        tell the observers, once the models hold the whole transaction, as the journal does."""
        for transition in transitions:
            if id(transition) in self._ahead:
                self._ahead.discard(id(transition))  # deferred: applied when it was deferred
            else:
                self._apply([transition])
        if self.observer:
            for transition in transitions:
                self.observer(
                    transition.node or "",
                    self._models[transition.node].state if transition.node else "",
                    transition.step,
                    transition.kind,
                )

    def _apply(self, transitions: list[Transition]) -> None:
        for transition in transitions:
            self._history.track(transition)
            if transition.node is not None and transition.update:
                self._models[transition.node].record(transition.update)

    async def _notify(self, transitions: list[Transition]) -> None:
        """Wake the nodes that wait for the Management Node when it moved to another state, or committed a step
        one of them waits for (``MANAGEMENT_STEP_PREREQUISITE``).

        Only then: what they wait for is its state (``machines.plan``; its run's end wakes them too, ``Engine._drive``),
        and a step's start or commit within one state woke every waiting node for nothing (issue #11).
        """
        management = self.deployment.management.name
        if any(
            t.node == management
            and (t.to_state not in (None, t.from_state) or (t.kind == kinds.STEP_COMMITTED and t.step in _AWAITED))
            for t in transitions
        ):
            async with self._changed:
                self._changed.notify_all()

    def plan(self, model: NodeModel, until: str | None = None) -> Action:
        return next_action(
            role=model.role,
            state=model.state,
            step=model.step,
            management_state=self._fleet.management.state if self._fleet.management else None,
            management_step=self._fleet.management.step if self._fleet.management else None,
            maintenance=model.maintenance,
            until=until or self._until,
            last_error=model.reason,
            gate=model.gate,
            node=model.name,
        )

    def _may_go_on(self, model: NodeModel) -> bool:
        """Whether the node's next step may be started in the same transaction as this commit.

        Not when stopping, nor when an operator put the node in maintenance meanwhile (read from the
        journal as the run loop does before each step): its next step is then not started at all.
        """
        if self._stopping:
            return False
        model.record({"maintenance": maintenance_of(self.journal, model.name)})
        return not model.maintenance

    def _started(self, model: NodeModel, step: str) -> Transition:
        """The ``step_started`` of ``step``'s first attempt, to journal with the transition that leads to it.

        The node's run loop then runs the step without journaling its start again: the start is
        durable before any of the step's side effects (the barrier before them), as the protocol wants.
        """
        self._prestarted[model.name] = step
        return Transition(
            node=model.name,
            kind=kinds.STEP_STARTED,
            step=step,
            attempt=1,
            key=self._key(model, step, 1),
            from_state=model.state,
            to_state=model.state,
            actor=self.actor,
            update={"step": step, "attempt": 1, "last_error": None},
        )

    async def _transition(self, model: NodeModel, trigger: str, *, kind: str, **fields: Any) -> None:
        """Fire ``trigger``, then commit ``kind`` (the arguments of :meth:`_fired`) in a transaction of its own."""
        await self._commit(await self._fired(model, trigger, kind=kind, **fields))

    async def _fired(
        self,
        model: NodeModel,
        trigger: str,
        *,
        kind: str,
        step: str | None = None,
        payload: dict[str, Any] | None = None,
        update: dict[str, Any] | None = None,
        actor: str | None = None,
        attempt: int | None = None,
        **kwargs: Any,
    ) -> Transition:
        """Fire ``trigger`` on the model; the transition to commit for it (the caller commits it).

        The transition carries the new state and ``update``; ``attempt``: the attempt to journal
        (default: the model's); ``kwargs`` go to the trigger's conditions.
        """
        before = model.state
        await fire(self._machine, model, trigger, step=step, **kwargs)
        fields = {"state": model.state, **(update or {})}
        if step is not None and "step" not in fields:
            fields["step"] = step
        return Transition(
            node=model.name,
            kind=kind,
            step=step,
            attempt=model.attempt if attempt is None else attempt,
            from_state=before,
            to_state=model.state,
            actor=actor or self.actor,
            payload=payload or {},
            update=fields,
        )

    async def start_milestone(self, model: NodeModel, milestone: str) -> None:
        """``milestone_started`` and the ``step_started`` of its first step, deferred together."""
        first = STEPS[model.role][milestone][0]
        transitions = [await self._fired(model, "start", kind=kinds.MILESTONE_STARTED, step=first)]
        if self._may_go_on(model):
            transitions.append(self._started(model, first))
        await self._defer_all(transitions)
