"""The orchestrator's library API: one function per user-level command, for the CLI, the HTTP API and the daemon.

Each function does one user-level thing and returns data; formatting is the caller's job.
What a caller knows goes in a :class:`SessionSettings`; the files, the deployment, the world
and the systems behind it are resolved and opened by :func:`open_session`. Example::

    settings = SessionSettings(config=Path("orchestrator.toml"))
    report = asyncio.run(run(settings))
    with open_existing_journal(settings) as journal:
        rows = status(journal)
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from adapters.base import Systems
from config.errors import AdapterError, ConfigError, OrchestratorError, Unknowable
from config.model import Deployment
from journal import Journal
from machines.lifecycle import FAILED, LDAP_AUTHENTICATED, STEPS
from machines.plan import remaining_steps
from orchestrator import _recap
from orchestrator import steps as step_impls
from orchestrator._init import Initialized, init_config
from orchestrator._journal_api import (
    Verification,
    approve,
    cert_import,
    export,
    public_key,
    set_maintenance,
    status,
    verify,
)
from orchestrator._session import (
    Session,
    SessionSettings,
    SimulationSettings,
    open_existing_journal,
    open_journal,
    open_readonly_journal,
    open_session,
    register_secrets,
)
from orchestrator._validation import Validation, validate
from orchestrator.audit import AuditOutcome, audit
from orchestrator.engine import Engine, RunReport
from orchestrator.steps.base import StepContext
from orchestrator.wiring import open_systems

__all__ = [
    "SessionSettings",
    "SimulationSettings",
    "Session",
    "open_session",
    "open_journal",
    "open_existing_journal",
    "open_readonly_journal",
    "register_secrets",
    "run",
    "drive",
    "plan",
    "plan_steps",
    "simulate",
    "resume",
    "resume_targets",
    "status",
    "approve",
    "cert_import",
    "set_maintenance",
    "export",
    "verify",
    "public_key",
    "Plan",
    "Verification",
    "ObserverFactory",
    "Validation",
    "validate",
    "Initialized",
    "init_config",
    "audit",
    "AuditOutcome",
]

log = structlog.get_logger("orchestrator")
ObserverFactory = Callable[[Deployment, Journal], Any]


def _install_signal_handlers(engine: Engine) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    hits = {"n": 0}

    def handler() -> None:
        hits["n"] += 1
        if hits["n"] == 1:
            log.warning("stopping: no new steps start; the steps in flight finish (signal again to stop now)")
            engine.stop()
            if callable(stopping := getattr(engine.observer, "stopping", None)):
                stopping()  # the live display says at once what it waits for
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


async def drive(
    deployment: Deployment,
    journal: Journal,
    *,
    nodes: Sequence[str] | None = None,
    until: str = LDAP_AUTHENTICATED,
    world: Any = None,
    systems: Systems | None = None,
    observer: Callable[..., None] | None = None,
    auto_approve: bool = False,
    actor: str = "orchestrator",
    hooks: Any = None,
    retry: Sequence[str] = (),
    from_step: str | None = None,
    max_concurrency: int | None = None,
    clock: Any = None,
) -> RunReport:
    """Drive the nodes to ``until`` (default: ldap_authenticated) with the parts already open.

    Args:
        systems: the adapters (a session's); default: opened over ``world`` and closed after.
        retry: failed nodes to put back where they failed first (``resume``).
        from_step: with ``retry``/``nodes``: rewind those nodes to this step (``resume --from-step``).
    """
    own = systems is None
    systems = open_systems(deployment, world) if systems is None else systems
    try:
        await _preflight(deployment, systems, clock)
        engine = Engine(
            deployment,
            journal,
            systems,
            auto_approve=auto_approve,
            actor=actor,
            hooks=hooks,
            observer=observer,
            max_concurrency=max_concurrency,
            clock=clock,
        )
        engine.load()
        remove = _install_signal_handlers(engine)
        start = _recap.begin(journal)
        try:
            report = await engine.run(nodes, until=until, retry=retry, from_step=from_step)
        finally:
            remove()
        report.recap = _recap.finish(journal, start, report, actor=actor)
        return report
    finally:
        if own:
            await systems.aclose()


@contextmanager
def _observing(factory: ObserverFactory | None, deployment: Deployment, journal: Journal) -> Iterator[Any]:
    """The caller's observer of the engine's commits, entered when it is a context manager (a live display)."""
    observer = factory(deployment, journal) if factory else None
    with observer if isinstance(observer, AbstractContextManager) else nullcontext():
        yield observer


async def _drive_session(session: Session, factory: ObserverFactory | None, **options: Any) -> RunReport:
    assert session.journal is not None  # "create" and "existing" sessions always have one
    with _observing(factory, session.deployment, session.journal) as display:
        observer = display
        checkpointer = session.checkpointer
        if checkpointer is not None:

            def observer(*args: Any) -> None:  # every committed transition: sign every N, then display
                checkpointer.committed()
                if display:
                    display(*args)

        return await drive(
            session.deployment,
            session.journal,
            systems=session.systems,
            hooks=session.hooks,
            observer=observer,
            actor=session.settings.actor,
            **options,
        )


async def run(
    settings: SessionSettings,
    *,
    nodes: Sequence[str] | None = None,
    until: str = LDAP_AUTHENTICATED,
    observer_factory: ObserverFactory | None = None,
    clock: Any = None,
) -> RunReport:
    """``run``: drive the nodes (default: all) of the configured deployment to ``until``."""
    async with open_session(settings) as session:
        return await _drive_session(session, observer_factory, nodes=nodes, until=until, clock=clock)


def resume_targets(journal: Journal, node: str | None, from_step: str | None) -> tuple[list[str], list[str]]:
    """Which nodes ``resume`` drives, and which of them it puts back first (failed ones; all with ``from_step``)."""
    records = journal.nodes()
    names = [node] if node else [r.name for r in records]
    retry = [r.name for r in records if r.name in names and (r.state == FAILED or from_step)]
    return names, retry


async def resume(
    settings: SessionSettings,
    node: str | None = None,
    *,
    all_nodes: bool = False,
    from_step: str | None = None,
    observer_factory: ObserverFactory | None = None,
    clock: Any = None,
) -> RunReport:
    """``resume``: continue NODE (or every node) from its last committed state; failed nodes are retried.

    Without a configuration file, a simulation's journal names its own deployment and world.
    """
    if bool(node) == all_nodes:
        raise ConfigError([("NODE", "give one NODE or --all")])
    if from_step and all_nodes:
        raise ConfigError([("--from-step", "goes with one NODE, not --all")])
    async with open_session(settings, journal="existing") as session:
        assert session.journal is not None
        names, retry = resume_targets(session.journal, node, from_step)
        return await _drive_session(
            session,
            observer_factory,
            nodes=names,
            retry=retry,
            from_step=from_step,
            auto_approve=session.simulated,
            clock=clock,
        )


# --- dry run ------------------------------------------------------------------------------


@dataclass
class Plan:
    """Per node and step: what would change, what is already right, what cannot be known yet."""

    nodes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"nodes": self.nodes}


async def plan(
    settings: SessionSettings, *, nodes: Sequence[str] | None = None, until: str = LDAP_AUTHENTICATED
) -> Plan:
    """``run --dry-run``: the plan of the configured deployment; no journal is created."""
    async with open_session(settings, journal="optional") as session:
        return await plan_steps(session.deployment, session.journal, nodes=nodes, until=until, systems=session.systems)


async def plan_steps(
    deployment: Deployment,
    journal: Journal | None,
    *,
    nodes: Sequence[str] | None = None,
    until: str = LDAP_AUTHENTICATED,
    world: Any = None,
    systems: Systems | None = None,
) -> Plan:
    """Observe and diff every remaining step, read-only (``systems`` default: opened over ``world``)."""
    own = systems is None
    systems = open_systems(deployment, world) if systems is None else systems
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
        if own:
            await systems.aclose()
    return result


# --- simulate ---------------------------------------------------------------------------


def _remove_sqlite(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.key"), Path(f"{path}.checkpoints")):
        if p.exists():
            p.unlink()


async def simulate(
    settings: SimulationSettings,
    *,
    observer_factory: ObserverFactory | None = None,
    allow_version_change: bool = False,
    clock: Any = None,
) -> tuple[RunReport, dict[str, Any]]:
    """A whole deployment against the simulated world; resumable like a real run.

    Returns the run report and the effects summary ({node: {kind: count}}).
    """
    from adapters.sim.world import FaultPlan

    plan_ = FaultPlan.parse(settings.faults)
    known = {s for role in STEPS.values() for steps in role.values() for s in steps}
    unknown = sorted({p.step for p in (*plan_.permanent, *plan_.exits)} - known)
    if unknown:
        raise ConfigError([("--faults", f"unknown step(s) {unknown}; steps: {sorted(known)}")])
    if settings.nodes < 1:
        raise ConfigError(
            [("--nodes", f"must be at least 1 (got {settings.nodes}): 1 Management Node + N-1 Conferencing Nodes")]
        )
    workdir = Path(f"{settings.world}.d")
    if settings.fresh:
        _remove_sqlite(settings.journal)
        _remove_sqlite(settings.world)
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    session_settings = SessionSettings(
        journal=settings.journal,
        actor="simulate",
        allow_version_change=allow_version_change,
        simulation=settings,
    )
    async with open_session(session_settings) as session:
        assert session.world is not None
        report = await _drive_session(
            session, observer_factory, auto_approve=True, max_concurrency=settings.max_concurrency, clock=clock
        )
        effects = session.world.effects_summary()
    if settings.effects_out:
        settings.effects_out.write_text(json.dumps(effects, indent=2, sort_keys=True) + "\n")
    return report, effects
