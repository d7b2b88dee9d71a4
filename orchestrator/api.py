"""The orchestrator's library API: what the CLI (and later the HTTP API) call.

Each function does one user-level thing and returns data; formatting is the
caller's job. Example::

    deployment = load_deployment("orchestrator.toml")
    with open_journal("orchestrator.journal.sqlite") as journal:
        report = asyncio.run(run(deployment, journal))
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import structlog

from adapters.base import Systems
from config.errors import AdapterError, ConfigError, DefinitionChanged, OrchestratorError, Unknowable
from config.model import Deployment
from config.secrets import REDACTOR
from journal import Journal, kinds
from machines.lifecycle import APPROVAL_GATES, FAILED, GATES, LDAP_AUTHENTICATED, STEPS, definition_hash
from machines.plan import next_action, remaining_steps
from orchestrator import steps as step_impls
from orchestrator.engine import Engine, RunReport
from orchestrator.steps.base import StepContext
from orchestrator.wiring import open_systems

__all__ = [
    "open_journal",
    "register_secrets",
    "run",
    "plan",
    "simulate",
    "status",
    "approve",
    "cert_import",
    "set_maintenance",
    "SimulationSettings",
    "Plan",
]

log = structlog.get_logger("orchestrator")


@contextmanager
def open_journal(path: str | Path, *, allow_version_change: bool = False, actor: str = "orchestrator") -> Iterator[Journal]:
    """Open the journal and check it was written by this lifecycle definition.

    Raises:
        DefinitionChanged: the journal was written by another definition and
            ``allow_version_change`` is not set.
    """
    journal = Journal.open(path)
    try:
        current = definition_hash()
        recorded = journal.get_meta("definition_hash")
        if recorded is None:
            journal.set_meta("definition_hash", current)
            journal.record(node=None, kind=kinds.DEFINITION_RECORDED, actor=actor, payload={"definition_hash": current})
        elif recorded != current:
            if not allow_version_change:
                raise DefinitionChanged(
                    f"journal {path} was written by lifecycle definition {recorded[:12]}, this orchestrator has "
                    f"{current[:12]}: the states or steps changed. Finish it with the orchestrator version that "
                    "started it, or pass --allow-version-change to continue with this one (journaled)"
                )
            journal.record(node=None, kind=kinds.DEFINITION_CHANGED, actor=actor, payload={"from": recorded, "to": current})
            journal.set_meta("definition_hash", current)
        yield journal
    finally:
        journal.close()


def register_secrets(deployment: Deployment) -> None:
    """Read every secret once so the redactor knows the values before anything is logged."""
    for secret in deployment.secrets():
        try:
            REDACTOR.register(secret.reveal())
        except (KeyError, OSError):
            pass  # validation reported it already when it mattered


def _install_signal_handlers(engine: Engine) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    hits = {"n": 0}

    def handler() -> None:
        hits["n"] += 1
        if hits["n"] == 1:
            log.warning("stopping: no new steps start; the steps in flight finish (signal again to stop now)")
            engine.stop()
        else:
            for task in asyncio.all_tasks(loop):
                if task.get_name().startswith("node:"):
                    task.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove


async def _preflight(deployment: Deployment, systems: Systems, clock: Any = None) -> None:
    """Host environment, VLANs, inventory: before any change, so bad input changes nothing.

    Only reads, so a transient error is retried a few times before the run gives up.
    """
    import random

    from orchestrator.clock import SystemClock

    clock = clock or SystemClock()
    retry = deployment.policy.retry
    rng = random.Random()
    attempts = retry.max_attempts
    for attempt in range(1, attempts + 1):
        try:
            await systems.vsphere.preflight(deployment)
            return
        except AdapterError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            await clock.sleep(retry.backoff(attempt, rng))


async def run(
    deployment: Deployment,
    journal: Journal,
    *,
    nodes: Sequence[str] | None = None,
    until: str = LDAP_AUTHENTICATED,
    world: Any = None,
    observer: Callable[..., None] | None = None,
    auto_approve: bool = False,
    actor: str = "orchestrator",
    hooks: Any = None,
    retry: Sequence[str] = (),
    from_step: str | None = None,
    max_concurrency: int | None = None,
    clock: Any = None,
) -> RunReport:
    """Drive the nodes to ``until`` (default: ldap_authenticated).

    Args:
        retry: failed nodes to put back where they failed first (``resume``).
        from_step: with ``retry``/``nodes``: rewind those nodes to this step (``resume --from-step``).
    """
    systems = open_systems(deployment, world)
    try:
        await _preflight(deployment, systems, clock)
        engine = Engine(
            deployment, journal, systems, auto_approve=auto_approve, actor=actor, hooks=hooks,
            observer=observer, max_concurrency=max_concurrency, clock=clock,
        )
        engine.load()
        remove = _install_signal_handlers(engine)
        try:
            return await engine.run(nodes, until=until, retry=retry, from_step=from_step)
        finally:
            remove()
    finally:
        await systems.aclose()


# --- dry run ------------------------------------------------------------------------------

@dataclass
class Plan:
    """Per node and step: what would change, what is already right, what cannot be known yet."""

    nodes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"nodes": self.nodes}


async def plan(deployment: Deployment, journal: Journal | None, *, nodes: Sequence[str] | None = None, until: str = LDAP_AUTHENTICATED, world: Any = None) -> Plan:
    """``run --dry-run``: observe and diff every remaining step, read-only."""
    systems = open_systems(deployment, world)
    result = Plan()
    try:
        await _preflight(deployment, systems)
        records = {r.name: r for r in journal.nodes()} if journal else {}
        for spec in deployment.nodes:
            if nodes and spec.name not in nodes:
                continue
            r = records.get(spec.name)
            state, step = (r.state, r.step) if r else ("new", None)
            if state == FAILED and r is not None and r.failed_from:
                state = r.failed_from
            rows = []
            unknown_from: str | None = None
            for milestone, name in remaining_steps(spec.role, state, step, until):
                row: dict[str, Any] = {"milestone": milestone, "step": name}
                if unknown_from:
                    row.update(status="unknown", reason=f"depends on {unknown_from}")
                else:
                    ctx = StepContext(deployment, spec, systems, dry_run=True)
                    try:
                        changes = await step_impls.plan_step(step_impls.STEPS[name], ctx)
                        row.update(status="change" if changes else "ok", changes=[c.as_dict() for c in changes])
                        if changes:
                            # Later steps observe what this one would make: never guess them.
                            unknown_from = name
                    except Unknowable as exc:
                        row.update(status="unknown", reason=str(exc))
                        unknown_from = name
                    except OrchestratorError as exc:
                        row.update(status="error", reason=str(exc))
                        unknown_from = name
                rows.append(row)
            result.nodes[spec.name] = rows
    finally:
        await systems.aclose()
    return result


# --- simulate ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SimulationSettings:
    nodes: int = 4
    latency: float = 0.0
    faults: str = ""
    world: Path = Path("simulation.world.sqlite")
    journal: Path = Path("simulation.journal.sqlite")
    effects_out: Path | None = None
    fresh: bool = False
    max_concurrency: int | None = None


def _remove_sqlite(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.key")):
        if p.exists():
            p.unlink()


async def simulate(
    settings: SimulationSettings,
    *,
    observer_factory: Callable[[Deployment, Journal], Callable[..., None] | Any] | None = None,
    allow_version_change: bool = False,
    clock: Any = None,
) -> tuple[RunReport, dict[str, Any]]:
    """A whole deployment against the simulated world; resumable like a real run.

    Returns the run report and the effects summary ({node: {kind: count}}).
    """
    from adapters.sim.world import FaultPlan, SimWorld
    from config.load import simulated_deployment

    plan_ = FaultPlan.parse(settings.faults)
    known = {s for role in STEPS.values() for steps in role.values() for s in steps}
    unknown = sorted({p.step for p in (*plan_.permanent, *plan_.exits)} - known)
    if unknown:
        raise ConfigError([("--faults", f"unknown step(s) {unknown}; steps: {sorted(known)}")])
    if settings.nodes < 1:
        raise ConfigError([("--nodes", f"must be at least 1 (got {settings.nodes}): 1 Management Node + N-1 Conferencing Nodes")])
    workdir = Path(f"{settings.world}.d")
    if settings.fresh:
        _remove_sqlite(settings.journal)
        _remove_sqlite(settings.world)
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    deployment = simulated_deployment(settings.nodes, workdir, latency=settings.latency, faults=settings.faults)
    register_secrets(deployment)
    wanted = {"nodes": settings.nodes, "world": str(settings.world)}
    with open_journal(settings.journal, allow_version_change=allow_version_change, actor="simulate") as journal:
        recorded = journal.get_meta("simulation")
        if recorded is not None:
            before = json.loads(recorded)
            for option, key in (("--nodes", "nodes"), ("--world", "world")):
                if before.get(key) != wanted[key]:
                    raise ConfigError([(option, f"the journal {settings.journal} holds a simulation with {option} {before.get(key)}, "
                                                f"not {wanted[key]}; pass the same {option} to resume, or --fresh to start over")])
        else:
            journal.set_meta("simulation", json.dumps(wanted))
        world = SimWorld.open(settings.world, latency=settings.latency, faults=settings.faults)
        try:
            observer = observer_factory(deployment, journal) if observer_factory else None
            with observer if hasattr(observer, "__enter__") else nullcontext():
                report = await run(
                    deployment, journal, world=world, observer=observer, auto_approve=True, actor="simulate",
                    hooks=world,
                    max_concurrency=settings.max_concurrency, clock=clock,
                )
            effects = world.effects_summary()
        finally:
            await world.aclose()
    if settings.effects_out:
        settings.effects_out.write_text(json.dumps(effects, indent=2, sort_keys=True) + "\n")
    return report, effects


# --- status, gates, maintenance ---------------------------------------------------------

def status(journal: Journal, node: str | None = None) -> list[dict[str, Any]]:
    """Where each node stands and why (stable keys: the ``--json`` contract)."""
    records = journal.nodes()
    management = next((r for r in records if r.role == "management"), None)
    out = []
    for r in records:
        if node and r.name != node:
            continue
        action = next_action(
            role=r.role, state=r.state, step=r.step, management_state=management.state if management else None,
            maintenance=r.maintenance, last_error=r.last_error, gate=r.gate, node=r.name,
        )
        out.append(
            {
                "node": r.name,
                "role": r.role,
                "state": r.state,
                "step": r.step,
                "attempt": r.attempt,
                "gate": r.gate,
                "last_error": r.last_error,
                "failed_from": r.failed_from,
                "maintenance": bool(r.maintenance),
                "maintenance_reason": r.maintenance_reason,
                "lease": {"owner": r.lease_owner, "pid": r.lease_pid, "since": r.lease_since} if r.lease_owner else None,
                "updated_at": r.updated_at,
                "next": {"action": type(action).__name__.lower(), "reason": action.reason},
            }
        )
    if node and not out:
        raise ConfigError([("NODE", f"no node {node!r} in the journal; nodes: {[r.name for r in records]}")])
    return out


def _require_node(journal: Journal, node: str) -> Any:
    record = journal.node(node)
    if record is None:
        raise ConfigError([("NODE", f"no node {node!r} in the journal; nodes: {[r.name for r in journal.nodes()]}")])
    return record


def approve(journal: Journal, node: str, gate: str, *, by: str, reason: str | None = None) -> dict[str, Any]:
    """Open an approval gate (journaled with who and why). May be given before the node gets there."""
    _require_node(journal, node)
    if gate not in APPROVAL_GATES:
        allowed = sorted(APPROVAL_GATES)
        raise ConfigError([("GATE", f"{gate!r} is not an approval gate; approval gates: {allowed} (a certificate comes with `orchestrator cert import`)")])
    if not by.strip():
        raise ConfigError([("--by", "say who approves (a name or an ID), for the audit record")])
    event = journal.record(node=node, kind=kinds.GATE_OPENED, step=GATES[gate]["step"], actor=by, payload={"gate": gate, "approved": True, "reason": reason or ""})
    return {"node": node, "gate": gate, "by": by, "seq": event.seq}


def cert_import(journal: Journal, node: str, path: Path) -> dict[str, Any]:
    """The CA's signed certificate for the node's pending CSR; checked to be a certificate."""
    from cryptography import x509

    _require_node(journal, node)
    try:
        pem = path.read_text()
        cert = x509.load_pem_x509_certificate(pem.encode())
    except (OSError, ValueError) as exc:
        raise ConfigError([("FILE", f"{path}: not a readable PEM certificate ({exc}); give the CA's signed certificate, not the CSR")]) from exc
    event = journal.record(
        node=node, kind=kinds.GATE_OPENED, step="install_certificate", actor="operator",
        payload={"gate": "certificate", "certificate": pem, "subject": cert.subject.rfc4514_string(), "serial": format(cert.serial_number, "x")},
    )
    return {"node": node, "subject": cert.subject.rfc4514_string(), "seq": event.seq}


def set_maintenance(journal: Journal, node: str, on: bool, *, by: str, reason: str | None = None) -> dict[str, Any]:
    """Stop (or restart) automation for one node without losing its place."""
    record = _require_node(journal, node)
    journal.record(
        node=node, kind=kinds.MAINTENANCE_ON if on else kinds.MAINTENANCE_OFF, actor=by,
        payload={"reason": reason or ""}, update={"maintenance": on, "maintenance_reason": reason if on else None},
    )
    return {"node": node, "maintenance": on, "state": record.state}
