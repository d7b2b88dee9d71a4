"""The gates of the nodes one engine drives: opening them, waiting on them, and what they carried.

A gate opens by a journaled ``gate_opened`` event, written by this process (the CA
answered, or ``simulate`` approved by itself) or by another one (``orchestrator approve``,
``orchestrator cert import``), which is found in the journal. What the event carried
(an approval, a signed certificate) is kept in memory until the gated step commits: then
it is consumed. Who opens each gate is declared with it (``machines.lifecycle.GATES``,
``opens_by``); whether the CA answers by itself is the CA adapter's to say.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from adapters.base import Systems
from config.errors import AdapterError
from config.model import Deployment
from journal import Event, Journal, Transition, kinds
from machines.lifecycle import APPROVAL_GATES, FAILED, GATE_OF_STEP, GATES, STEPS, milestone_index
from orchestrator.clock import Clock
from orchestrator.steps.base import Change, Step, StepContext

__all__ = ["Gates", "unreachable_gate", "pending_gate"]

log = structlog.get_logger("orchestrator.gates")

Payload = dict[str, Any]


class Gates:
    """The opened gates of one engine's nodes, by (node, gate).

    Args:
        commit: the engine's deferred journaling (``gate_opened`` goes through it like a step's start:
            durable at the barrier before the side effect it allows, in the same transaction as that start).
        barrier: the engine's barrier: every deferred transition durable, before a side effect (a CSR
            handed to the CA).
        auto_approve: open approval gates by itself (``simulate`` only), journaled as such.
        poll_s: how long a wait polls a gate that opens by itself before giving up for this run.
    """

    def __init__(
        self,
        deployment: Deployment,
        journal: Journal,
        systems: Systems,
        commit: Callable[[Transition], Awaitable[None]],
        clock: Clock,
        *,
        barrier: Callable[[], Awaitable[None]],
        actor: str,
        auto_approve: bool = False,
        poll_s: float = 30.0,
    ) -> None:
        self._deployment = deployment
        self._journal = journal
        self._systems = systems
        self._commit = commit
        self._barrier = barrier
        self._clock = clock
        self._actor = actor
        self._auto_approve = auto_approve
        self._poll_s = poll_s
        self._opened: dict[tuple[str, str], Payload] = {}

    def load(self, states: Mapping[str, str]) -> None:
        """Keep the gates the journal shows opened and not yet consumed, for nodes in ``states``."""
        # A gate whose step committed after it opened was consumed, even when the node has come back
        # to that step since (a renewal CSR after `orchestrator cert renew`: the old certificate is no answer).
        committed = {
            (e.node, e.step): e.seq
            for e in self._journal.events(kinds=[kinds.STEP_COMMITTED])
            if e.step in GATE_OF_STEP
        }
        for event in self._journal.events(kinds=[kinds.GATE_OPENED]):
            gate = event.payload.get("gate") or event.step
            state = states.get(event.node or "")
            # A gate of a milestone the node has completed was consumed: not kept in memory.
            if state is None or gate not in GATES or milestone_index(state) > milestone_index(GATES[gate]["transient"]):
                continue
            if committed.get((event.node, GATES[gate]["step"]), -1) > event.seq:
                continue
            self._opened[(event.node or "", gate)] = dict(event.payload)

    def payload(self, node: str, step: str) -> Payload | None:
        """What the gate of ``step`` carried, if the step has a gate and it is open."""
        gate = GATE_OF_STEP.get(step)
        return self._opened.get((node, gate)) if gate else None

    def consume(self, node: str, step: str) -> None:
        """The gated step committed: forget what its gate carried."""
        gate = GATE_OF_STEP.get(step)
        if gate:
            # A certificate is ~1.5 KB per node, not to be kept for the whole run.
            self._opened.pop((node, gate), None)

    async def closed(self, node: str, step: Step, ctx: StepContext, changes: list[Change]) -> str | None:
        """The gate that holds ``changes`` back (None: none, or open now; its payload goes to ``ctx``)."""
        gate = step.gate(ctx, changes)
        if not gate or ctx.gate_payload is not None:
            return None
        payload = await self.open_nowait(node, step, ctx, gate)
        if payload is None:
            return gate
        ctx.gate_payload = payload
        return None

    async def open_nowait(self, node: str, step: Step, ctx: StepContext, gate: str) -> Payload | None:
        """Open a gate without waiting: the outside world already answered, or simulate approves."""
        if GATES[gate]["opens_by"] == "ca":
            await self._barrier()  # handing the CSR to the CA is the step's side effect: its start is on disk first
        payload = await step.try_open_gate(ctx, gate)
        actor = GATES[gate]["opens_by"] if payload else None
        if payload is None and self._auto_approve and gate in APPROVAL_GATES:
            payload = {"approved": True, "reason": "simulation: approved automatically"}
            actor = f"{self._actor} (auto-approve)"
        if payload is None:
            return None
        payload = {"gate": gate, **payload}
        await self._commit(
            Transition(node=node, kind=kinds.GATE_OPENED, step=step.name, actor=actor or self._actor, payload=payload)
        )
        self._opened[(node, gate)] = payload
        return payload

    async def wait(self, node: str, step: Step | None, gate: str, *, stopping: Callable[[], bool]) -> Payload | None:
        """The gate's payload once it is open; None when it is not open (yet) for this run.

        Polls for ``poll_s`` a gate that opens by itself (a CA that answers by itself);
        any other gate is looked at once: the run then exits 3 and says how to open it.

        Raises:
            AdapterError: a non-retryable one of the step's opener (the CA's certificate is refused).
        """
        deadline = self._clock.monotonic() + self._poll_s
        delay = 0.05
        while True:
            payload = self._opened.get((node, gate)) or self._from_journal(node, gate)
            if payload is None and step is not None:
                ctx = StepContext(self._deployment, self._deployment.node(node), self._systems)
                try:
                    payload = await self.open_nowait(node, step, ctx, gate)
                except AdapterError as exc:
                    if not exc.retryable:
                        raise  # the outside world answered, and wrongly (a certificate refused): the node fails
                    log.warning("gate poll failed", node=node, gate=gate, error=str(exc))
            if payload is not None:
                return payload
            if stopping() or self._clock.monotonic() >= deadline or not self.opens_by_itself(gate):
                return None
            await self._clock.sleep(delay)
            delay = min(delay * 2, 2.0)

    def opens_by_itself(self, gate: str) -> bool:
        """Whether ``gate`` is worth polling: opened by the CA, and the CA answers by itself."""
        return GATES.get(gate, {}).get("opens_by") == "ca" and self._systems.ca.answers_by_itself

    def _from_journal(self, node: str, gate: str) -> Payload | None:
        """Another process (``orchestrator approve`` / ``cert import``) may have opened it: its last
        ``gate_opened``, unless the gated step committed since (consumed: a renewal waits for a new one)."""
        event = self._journal.last_event(node, kind=kinds.GATE_OPENED)
        if event is None or event.payload.get("gate") != gate:
            return None
        step = GATES[gate]["step"]
        if any(
            e.seq > event.seq and e.step == step for e in self._journal.events(node=node, kinds=[kinds.STEP_COMMITTED])
        ):
            return None
        self._opened[(node, gate)] = dict(event.payload)
        return dict(event.payload)


# --- the operators' side: what `approve` and `cert import` may open ---------------------------


def unreachable_gate(
    role: str, state: str, failed_from: str | None, gate: str, deployment: Deployment | None
) -> str | None:
    """Why a node can never reach ``gate`` (None: it can, or is there); ``deployment`` adds the policy's say."""
    step = GATES[gate]["step"]
    if not any(step in steps for steps in STEPS[role].values()):
        return f"a {role} node has no {step} step, so never the {gate} gate"
    here = failed_from if state == FAILED and failed_from else state
    if milestone_index(here) > milestone_index(GATES[gate]["transient"]):
        return f"the node is at {here}, past the {gate} gate of {GATES[gate]['transient']}"
    if deployment is not None and gate == "bios_password" and deployment.bios.password_method != "operator":
        return (
            f"bios.password_method is {deployment.bios.password_method!r}: the orchestrator types the BIOS password, "
            'no operator confirms it (the gate exists with password_method = "operator" only)'
        )
    if deployment is not None and gate == "security_wizard" and not deployment.policy.gates.security_wizard_approval:
        return "the policy's gates.security_wizard_approval is off: the security wizard waits on no approval"
    return None


def pending_gate(journal: Journal, node: str, gate: str) -> Event | None:
    """The ``gate_opened`` of ``gate`` that its step has not consumed yet (no ``step_committed`` after it)."""
    step = GATES[gate]["step"]
    opened: Event | None = None
    for event in journal.events(node=node, kinds=[kinds.GATE_OPENED, kinds.STEP_COMMITTED, kinds.REWOUND]):
        if event.kind == kinds.GATE_OPENED and (event.payload.get("gate") or event.step) == gate:
            opened = event
        elif event.step == step or event.kind == kinds.REWOUND:
            opened = None
    return opened
