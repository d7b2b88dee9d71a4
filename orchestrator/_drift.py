"""Drift on ``run``: journal what a refresh found, re-apply what is reversible, fail the node on the rest.

Before a node is driven, ``Reconciler.reconcile`` refreshes every step of the milestones it has
completed (``orchestrator._refresh``). Nothing differs: nothing is written. Otherwise, in
lifecycle order:

- each drifted step is journaled as a ``drift_detected`` event (step, fields, observed and
  expected values; secrets never: steps diff digests, and the journal scrubs payloads);
- a reversible step (``Step.reversible``: its apply is idempotent and may run again on a finished
  node, a setting, a reservation) is re-applied in place through the step protocol: ``step_started``
  durable before the side effect, observe -> diff -> apply -> verify, ``step_committed``; the node's
  state and step are left as they were (a crash in between: the next refresh finds the drift again);
- the first step that is not reversible (a VM gone, a wizard answered otherwise) fails the node
  there: ``rewound`` to that step and ``step_failed`` naming what was found and the repair command,
  in one transaction; later drifts are journaled, and redone by that repair.

The ``drift_detected`` events go into the transaction of the first repair's start or of the failure.
"""

from __future__ import annotations

from typing import Any

import structlog

from config.errors import AdapterError, OrchestratorError
from journal import Transition, kinds
from machines.lifecycle import FAILED, NEW
from machines.node import NodeModel
from machines.plan import Action, Stopped
from orchestrator import steps as step_impls
from orchestrator._refresh import DRIFT, Drift, refresh_node
from orchestrator._step_run import StepRunner
from orchestrator.steps.base import StepContext

__all__ = ["Reconciler", "repair_command", "drift_payload"]

log = structlog.get_logger("orchestrator.engine")


def repair_command(node: str, step: str) -> str:
    """What an operator runs once the cause of a non-reversible drift is understood."""
    return f"orchestrator resume {node} --from-step {step}"


def drift_payload(drift: Drift) -> dict[str, Any]:
    """The ``drift_detected`` payload: the step's fields with what the world has and what the step made."""
    return {
        "milestone": drift.milestone,
        "fields": [c.field for c in drift.changes],
        "observed": {c.field: c.now for c in drift.changes},
        "expected": {c.field: c.wanted for c in drift.changes},
        "reversible": drift.reversible,
    }


class Reconciler(StepRunner):
    """The engine's drift handling (a base of ``engine.Engine``)."""

    async def reconcile(self, model: NodeModel) -> Action | None:
        """Refresh the node's completed milestones and act on the drift; an action ends the node's run.

        Returns:
            None: nothing drifted, or every drift was re-applied (the node goes on); a ``Stopped``
            when the refresh itself could not observe (nothing journaled, nothing changed).
            A non-reversible drift fails the node (journaled), and the planner says so next.
        """
        if model.maintenance or model.state in (NEW, FAILED) or self._stopping:
            return None
        found = await self._refresh(model)
        if not found:
            return None
        drifted = [d for d in found if d.status == DRIFT]
        first_blocker = next((d for d in drifted if not d.reversible), None)
        unobserved = [d for d in found if d.status != DRIFT]
        if unobserved and first_blocker is None:
            d = unobserved[0]
            return Stopped(
                f"refresh of {model.name} could not observe {d.step}: {d.reason}; nothing was changed; "
                "run again once the system answers"
            )
        pending = [self._detected(model, d) for d in drifted]
        for drift in drifted:
            log.warning("drift detected", node=model.name, step=drift.step, fields=[c.field for c in drift.changes])
        for drift in drifted:
            if drift is first_blocker:
                await self._fail_on_drift(model, drift, pending)
                return None
            if not await self._reapply(model, drift, pending):
                return None  # failed: the planner reports it
            pending = []
        return None

    async def _refresh(self, model: NodeModel) -> list[Drift]:
        """The node's refresh; an observation that failed with a retryable error is tried again, with backoff."""

        async def pause(attempt: int) -> None:
            await self.clock.sleep(self._backoff(attempt))

        async with self._global:  # a thousand nodes refreshing at once would flood vCenter and the API
            return await refresh_node(
                self.deployment,
                self.deployment.node(model.name),
                model.state,
                self.systems,
                attempts=self._retry.max_attempts,
                pause=pause,
            )

    def _detected(self, model: NodeModel, drift: Drift) -> Transition:
        return Transition(
            node=model.name,
            kind=kinds.DRIFT_DETECTED,
            step=drift.step,
            from_state=model.state,
            to_state=model.state,
            actor=self.actor,
            payload=drift_payload(drift),
        )

    async def _reapply(self, model: NodeModel, drift: Drift, pending: list[Transition]) -> bool:
        """Run one reversible step again in place, retrying retryable errors; False: the node failed."""
        step = step_impls.STEPS[drift.step]
        attempt = 0
        await self._global.acquire()
        try:
            while True:
                attempt += 1
                key = f"{model.name}:{drift.step}:drift:{attempt}"
                started = self._in_place(model, kinds.STEP_STARTED, drift.step, attempt, key, {"cause": "drift"})
                await self._commit_all([*pending, started])
                pending = []
                ctx = StepContext(self.deployment, self.deployment.node(model.name), self.systems)
                try:
                    outcome = await self._execute(model, step, ctx)
                except AdapterError as exc:
                    if not exc.retryable or attempt >= self._retry.max_attempts or self._stopping:
                        await self._fail_on_drift(model, drift, [], error=exc)
                        return False
                    delay = self._backoff(attempt)
                    await self._commit(
                        self._in_place(
                            model, kinds.STEP_RETRY, drift.step, attempt, key, {"cause": "drift", "error": str(exc)}
                        )
                    )
                    await self.clock.sleep(delay)
                    continue
                except (OrchestratorError, ValueError, OSError) as exc:
                    await self._fail_on_drift(model, drift, [], error=exc)
                    return False
                payload = {"cause": "drift", **(outcome.payload() if outcome else {"changed": []})}
                await self._commit(self._in_place(model, kinds.STEP_COMMITTED, drift.step, attempt, key, payload))
                log.info("drift re-applied", node=model.name, step=drift.step)
                return True
        finally:
            self._global.release()

    def _in_place(
        self, model: NodeModel, kind: str, step: str, attempt: int, key: str, payload: dict[str, Any]
    ) -> Transition:
        """An event of a step re-applied on a node that stays where it is (no row column changes)."""
        return Transition(
            node=model.name,
            kind=kind,
            step=step,
            attempt=attempt,
            key=key,
            from_state=model.state,
            to_state=model.state,
            actor=self.actor,
            payload=payload,
        )

    async def _fail_on_drift(
        self, model: NodeModel, drift: Drift, pending: list[Transition], *, error: BaseException | None = None
    ) -> None:
        """Rewind the node to the drifted step and fail it there, naming what was found and the repair."""
        found = "; ".join(f"{c.field} is {c.now!r}, expected {c.wanted!r}" for c in drift.changes)
        command = repair_command(model.name, drift.step)
        what = f"{drift.step}: drift on {model.name}: {found}"
        if error is None:
            reason = f"{what}; not re-applied on a finished node; repair: `{command}`"
        else:
            reason = f"{what}; re-applying it failed: {error}; repair: `{command}`"
        log.error("drift not reversible", node=model.name, step=drift.step, error=reason)
        rewound = await self._fired(
            model,
            "rewind",
            kind=kinds.REWOUND,
            step=drift.step,
            payload={"from_step": drift.step, "cause": "drift"},
            update={"step": drift.step, "attempt": 0, "gate": None, "last_error": None, "failed_from": None},
        )
        failed = await self._fired(
            model,
            "fail",
            kind=kinds.STEP_FAILED,
            step=drift.step,
            reason=reason,
            payload={"error": reason, "error_type": "Drift", "retryable": False, "cause": "drift"},
            update={"last_error": reason, "failed_from": model.state},
        )
        await self._commit_all([*pending, rewound, failed])
