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
import gc
import json
import shutil
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import structlog

from adapters.base import Systems
from adapters.bootstrap_store import bootstrap_dir
from config.errors import ConfigError
from config.model import Deployment
from journal import Journal
from machines.lifecycle import FAILED, LDAP_AUTHENTICATED, STEPS
from orchestrator import _plan, _recap, _saved_plan
from orchestrator._first_use import pin_journaled
from orchestrator._init import Initialized, init_config
from orchestrator._journal_api import (
    Verification,
    approve,
    cert_import,
    check_renewable,
    export,
    public_key,
    set_maintenance,
    status,
    verify,
)
from orchestrator._plan import Plan
from orchestrator._preflight import preflight
from orchestrator._refresh_api import refreshed_status
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
    "refreshed_status",
    "approve",
    "cert_import",
    "cert_renew",
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


def _freeze_what_lives_on() -> None:
    """Before a process's first run: what exists already (modules, classes, the configuration, the open
    session) lives as long as the process, so it is kept out of every later collection (``gc.freeze``), once.
    The full collections during the run and the one after it then walk the run's own objects only (#11:
    1000 nodes, 3 full collections 0.14 -> 0.03 s; 1 node, the one after the run ~20 -> ~1 ms)."""
    if not gc.get_freeze_count():
        gc.freeze()


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
    renew: bool = False,
    max_concurrency: int | None = None,
    clock: Any = None,
    check_first: bool = True,
    closing: Callable[[], object] | None = None,
) -> RunReport:
    """Drive the nodes to ``until`` (default: ldap_authenticated) with the parts already open.

    Args:
        systems: the adapters (a session's); default: opened over ``world`` and closed after.
        retry: failed nodes to put back where they failed first (``resume``).
        from_step: with ``retry``/``nodes``: rewind those nodes to this step (``resume --from-step``).
        check_first: run the preflight first (false: the session ran it before opening the journal).
        renew: with ``from_step = "create_csr"``: a renewal CSR from the installed certificate.
        closing: the session's closing checkpoint, in the recap's transaction (``Checkpointer.close_run``).
    """
    own = systems is None
    systems = open_systems(deployment, world) if systems is None else systems
    _freeze_what_lives_on()
    try:
        if check_first:
            await preflight(deployment, systems, clock)
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
            report = await engine.run(
                nodes, until=until, retry=retry, from_step=from_step, renew=renew, recap_follows=True
            )
        finally:
            remove()
        # The run's objects (the Engine, every NodeModel, their steps' leftovers: ~1.5 MB at 1000 nodes) are
        # cycles: only a full collection frees them, and none came before the recap and the closing checkpoint
        # had built theirs on top (#11: the traced peak 10.3 -> 9.4 MB, now the run's own). ~20 ms.
        del engine, remove
        gc.collect()
        report.recap = _recap.finish(journal, start, report, actor=actor, closing=closing)
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
            check_first=not session.preflighted,
            closing=checkpointer.close_run if checkpointer is not None else None,
            **options,
        )


async def run(
    settings: SessionSettings,
    *,
    nodes: Sequence[str] | None = None,
    until: str = LDAP_AUTHENTICATED,
    observer_factory: ObserverFactory | None = None,
    clock: Any = None,
    plan_file: Path | None = None,
) -> RunReport:
    """``run``: drive the nodes (default: all) of the configured deployment to ``until``.

    Args:
        plan_file: apply exactly this saved plan (``run --plan PLAN``): its nodes and ``until``; refused
            (ConfigError) when the configuration, the policy, the journal or the world changed since.
    """
    if plan_file is not None:
        saved = _saved_plan.load(plan_file)
        nodes, until = saved["plan"]["selected"], saved["plan"]["until"]
        # Re-planned read-only before the session below writes anything: a refused plan changes nothing.
        _saved_plan.check(saved, await plan(settings, nodes=nodes, until=until))
    async with open_session(settings, clock=clock, nodes=nodes) as session:
        if plan_file is not None:
            assert session.journal is not None
            _saved_plan.check_opened(saved, session.journal)
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
    async with open_session(settings, journal="existing", clock=clock, nodes=[node] if node else None) as session:
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


async def cert_renew(
    settings: SessionSettings, node: str, *, observer_factory: ObserverFactory | None = None, clock: Any = None
) -> RunReport:
    """``cert renew NODE``: a renewal CSR on the Manager from NODE's installed certificate (the same key),
    then the node's certificate steps again: the CA's answer waits in the certificate gate and passes the
    checks of ``cert import`` before it replaces the certificate (its node assignments kept).

    The rewind to ``create_csr`` is journaled (``rewound`` with ``renew: true``, by the session's actor):
    a run killed before the CSR is made makes it on ``resume``. The later steps run again, observing first.

    Raises:
        ConfigError: NODE unknown, or not certified yet (there is no certificate to renew).
    """
    async with open_session(settings, journal="existing") as session:
        assert session.journal is not None
        check_renewable(session.journal, node)
        return await _drive_session(
            session,
            observer_factory,
            nodes=[node],
            retry=[node],
            from_step="create_csr",
            renew=True,
            auto_approve=session.simulated,
            clock=clock,
        )


# --- dry run ------------------------------------------------------------------------------


async def plan(
    settings: SessionSettings,
    *,
    nodes: Sequence[str] | None = None,
    until: str = LDAP_AUTHENTICATED,
    save_to: Path | None = None,
) -> Plan:
    """``run --dry-run``: the plan of the configured deployment; no journal or world is created.

    Args:
        save_to: write the plan there (``run --dry-run -o PLAN``): the only file a dry run writes.
    """
    async with open_session(settings, journal="optional", nodes=nodes) as session:
        result = await plan_steps(
            session.deployment, session.journal, nodes=nodes, until=until, world=session.world, systems=session.systems
        )
    if save_to is not None:
        _saved_plan.save(result, save_to)
    return result


async def plan_steps(
    deployment: Deployment,
    journal: Journal | None,
    *,
    nodes: Sequence[str] | None = None,
    until: str = LDAP_AUTHENTICATED,
    world: Any = None,
    systems: Systems | None = None,
) -> Plan:
    """Preflight, then observe and diff every remaining step (and refresh the completed ones), read-only
    (``systems`` default: opened over ``world``)."""
    own = systems is None
    systems = open_systems(deployment, world) if systems is None else systems
    if journal is not None:
        pin_journaled(journal, systems)  # a plan refuses a key the journal does not hold, as a run does
    try:
        await preflight(deployment, systems)
        return await _plan.plan_steps(deployment, journal, systems, nodes=nodes, until=until, world=world)
    finally:
        if own:
            await systems.aclose()


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
        # The journal's bootstrap files too: one kept from an earlier simulation would be taken for the
        # file of a worker_vm that a killed run POSTed before storing its own, uploaded, and the node would
        # never sync (register_node waiting until retry.wait_timeout_s).
        shutil.rmtree(bootstrap_dir(settings.journal), ignore_errors=True)
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
