"""A session: the deployment, the simulated world, the journal, the systems and the fault hooks of one command.

The CLI, the HTTP API and the daemon all start here, so that which file is the journal, which
deployment a journal belongs to and which world a simulation keeps are decided in one place. The files
and the journal's opening are in :mod:`orchestrator._settings`, the simulated world in :mod:`orchestrator._worlds`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from adapters.base import Systems
from config.errors import ConfigError
from config.model import Deployment
from journal import Journal
from orchestrator import _trust
from orchestrator._access import journal_files, share_with_group
from orchestrator._preflight import preflight
from orchestrator._settings import (
    SessionSettings,
    SimulationSettings,
    check_deployment,
    existing_journal,
    journal_path,
    load_deployment,
    open_existing_journal,
    open_journal,
    open_journal_file,
    open_readonly_journal,
    register_secrets,
    resolved_journal,
)
from orchestrator._trust import Checkpointer, Trust
from orchestrator._worlds import (
    WorldUndo,
    check_simulation,
    closing,
    deployment_and_world,
    open_new_world,
    open_sim_world,
    open_world,
    recorded_deployment,
)
from orchestrator.wiring import open_syslog, open_systems

if TYPE_CHECKING:
    from adapters.sim.world import SimWorld

__all__ = [
    "SessionSettings",
    "SimulationSettings",
    "Session",
    "open_session",
    "open_journal",
    "open_existing_journal",
    "open_readonly_journal",
    "register_secrets",
    "load_deployment",
    "journal_path",
    "existing_journal",
    "resolved_journal",
]

JournalUse = Literal["create", "existing", "optional", "readonly"]


# How long a run's opening records may wait for its first durable commit (the writer's lock is held meanwhile).
HOLD_S = 0.05


@dataclass
class Session:
    """What one command works with; every part is closed by :func:`open_session`."""

    settings: SessionSettings
    deployment: Deployment
    journal_path: Path
    journal: Journal | None  # None only for a plan before anything has run
    world: SimWorld | None  # the open simulated world when any system is simulated
    systems: Systems
    simulated: bool  # the journal records a simulation: its gates are approved by the simulation
    checkpointer: Checkpointer | None = None  # signs the journal every N transitions and at the end
    preflighted: bool = False  # the systems were checked against the deployment before the journal was opened

    @property
    def hooks(self) -> SimWorld | None:
        """The engine's fault hooks: the simulated world injects its own faults."""
        return self.world


_Parts = tuple[Deployment, Path, "Journal | None", "SimWorld | None", bool, "Checkpointer | None"]


@asynccontextmanager
async def open_session(
    settings: SessionSettings,
    *,
    journal: JournalUse = "create",
    clock: Any = None,
    nodes: Sequence[str] | None = None,
) -> AsyncIterator[Session]:
    """Open what a command needs; on exit close the systems, then the world, then the journal.

    Each is closed even when closing an earlier one raises (the first error is re-raised).

    Args:
        journal: ``"create"`` (``run``, ``simulate``): the journal is made when new;
            ``"existing"`` (``resume``): it must exist, and without a configuration file the
            deployment is the simulation it records; ``"optional"`` (``run --dry-run``): opened
            only when it exists, else the session has none; ``"readonly"`` (``status --refresh``):
            it must exist and is opened read-only, nothing is recorded in it.

    Example::

        async with open_session(SessionSettings(config=Path("orchestrator.toml"))) as session:
            report = await drive(session.deployment, session.journal, systems=session.systems)
    """
    async with AsyncExitStack() as stack:
        if settings.simulation is not None:
            parts = _enter_simulation(stack, settings, settings.simulation)
            deployment, path, opened, world, simulated, checkpointer = parts
            systems = open_systems(deployment, world, journal=path)
            stack.push_async_callback(systems.aclose)
            yield Session(settings, deployment, path, opened, world, systems, simulated, checkpointer)
            return
        if journal == "existing":
            ready = _prepare_existing(stack, settings)
        elif journal == "readonly":
            ready = _prepare_readonly(stack, settings)
        else:
            ready = _prepare_configured(stack, settings, optional=journal == "optional")
        systems = open_systems(ready.deployment, ready.world, journal=ready.path)
        stack.push_async_callback(systems.aclose)
        try:
            _check_names(ready.deployment, nodes)
        except ConfigError:
            _drop_new_world(ready)
            raise
        if not ready.acting:  # a plan: read-only, its preflight is part of the plan
            yield Session(settings, ready.deployment, ready.path, ready.opened, ready.world, systems, ready.simulated)
            return
        # Bad input (a TLS refusal, a VLAN vCenter lacks, a foreign VM of a node's name) is found
        # before the journal or a simulation's key is created or written: nothing changed, exit 2
        # (issue #7, finding 9).
        try:
            await preflight(ready.deployment, systems, clock)
        except BaseException:
            _drop_new_world(ready)
            raise
        trust = ready.trust or _trust.checked_signer(ready.deployment, ready.path)
        assert trust is not None  # created when missing
        opened, checkpointer = _enter(
            stack, settings, ready.path, ready.deployment, trust, ready.command, bind=ready.command == "run"
        )
        # Only a simulation's own deployment approves its gates: never a meta row (not in the chain) saying
        # "simulation" on a configured deployment's journal, which would open the irreversible wizard's gate.
        yield Session(
            settings, ready.deployment, ready.path, opened, ready.world, systems, ready.simulated, checkpointer, True
        )


@dataclass
class _Ready:
    """What a configured command has checked and opened before its journal: the journal is opened last."""

    deployment: Deployment
    path: Path
    world: SimWorld | None
    trust: Trust | None  # None: a simulation's key not made yet (or a plan, which needs none)
    acting: bool = True  # false: a plan, which opens no journal for writing
    command: str = "run"
    opened: Journal | None = None  # a plan's read-only journal, when there is one
    simulated: bool = False
    undo: WorldUndo | None = None  # removes a world created here when the command stops before its journal


def _enter(
    stack: AsyncExitStack,
    settings: SessionSettings,
    path: Path,
    deployment: Deployment,
    trust: Trust,
    command: str,
    *,
    bind: bool = True,
) -> tuple[Journal, Checkpointer]:
    """The journal of a command that acts: verified, bound, its start recorded and signed.

    The opening records (binding, definition, ``run_started``, the nodes' registration, leases) need
    no durability of their own: they ride in the run's first durable commit (its first ``step_started``),
    or are committed alone after at most ``HOLD_S`` (issue #11; :meth:`journal.Journal.hold`).
    """
    made: list[Checkpointer] = []

    def before_writes(journal: Journal) -> None:
        made.append(_trust.open_run(journal, trust, deployment, open_syslog(deployment)))

    opened = open_journal(
        path,
        allow_version_change=settings.allow_version_change,
        actor=settings.actor,
        deployment=deployment.name,
        trust=trust,
        what=command,
        bind=bind,
        before_writes=before_writes,
    )
    journal = stack.enter_context(opened)
    (checkpointer,) = made
    stack.push_async_callback(checkpointer.aclose)  # before the journal closes: the end-of-run checkpoint
    import asyncio  # here: status and --help start without it (#11)

    stack.callback(asyncio.get_running_loop().call_later(HOLD_S, journal.release).cancel)
    share_with_group(journal_files(path), deployment.journal.group)
    if not bind and not journal.nodes():
        raise ConfigError(
            [
                (
                    "NODE",
                    f"nothing to {command}: journal {path} holds no node of deployment "
                    f"{deployment.name!r}; start with `orchestrator run`",
                )
            ]
        )
    user = settings.actor if settings.actor not in ("orchestrator", "simulate") else _trust.login_name()
    _trust.start_record(journal, deployment, command=command, user=user, argv=sys.argv)
    return journal, checkpointer


def _prepare_configured(stack: AsyncExitStack, settings: SessionSettings, *, optional: bool) -> _Ready:
    """``run``, ``run --dry-run``: the configuration's deployment, its key, its world; the journal after the preflight.

    The configuration and the key are checked before anything is created; the world opens
    before the journal: a world another process holds stops the run before the journal is touched.
    A dry run opens an existing journal read-only and creates nothing.
    """
    deployment = load_deployment(settings)
    assert deployment is not None  # required: a missing file raised
    register_secrets(deployment)
    path = journal_path(settings, deployment)
    if optional:
        world = stack.enter_context(closing(open_world(deployment, create=False)))
        if not path.exists():
            return _Ready(deployment, path, world, None, acting=False)
        opened = stack.enter_context(open_journal_file(path, readonly=True))
        check_deployment(opened, deployment.name)
        return _Ready(deployment, path, world, None, acting=False, opened=opened)
    trust = _trust.checked_signer(deployment, path, create=False)
    _check_bound(path, deployment)
    world, undo = open_new_world(stack, deployment)
    return _Ready(deployment, path, world, trust, undo=undo)


def _drop_new_world(ready: _Ready) -> None:
    """The command stops before its journal: a world it created goes too (nothing is left behind)."""
    if ready.undo is not None:
        ready.undo.armed = True


def _check_names(deployment: Deployment, nodes: Sequence[str] | None) -> None:
    """The nodes a command names are the deployment's: a typo is exit 2 before anything is written."""
    known = [n.name for n in deployment.nodes]
    unknown = [n for n in nodes or () if n not in known]
    if unknown:
        raise ConfigError([("NODE", f"unknown node(s) {unknown}; known: {sorted(known)}")])


def _check_bound(path: Path, deployment: Deployment) -> None:
    """A journal of another deployment is refused before its systems are even asked (read-only peek)."""
    if path.is_file() and path.stat().st_size:
        with open_journal_file(path, readonly=True) as peek:
            check_deployment(peek, deployment.name)


def _prepare_existing(stack: AsyncExitStack, settings: SessionSettings) -> _Ready:
    """``resume``: the journal must exist; without a configuration, the simulation it records and its world."""
    deployment = load_deployment(settings, required=False)
    if deployment is not None:
        register_secrets(deployment)
    path = existing_journal(settings, deployment)
    if deployment is None:
        with open_journal_file(path, readonly=True) as peek:
            recorded = peek.get_meta("simulation")
            if not recorded:
                raise ConfigError(
                    [("-c/--config", "this journal is not a simulation's: pass the deployment file with -c FILE")]
                )
            deployment, world_path = recorded_deployment(json.loads(recorded))
            # A meta row is not in the chain: a configured deployment's journal that says "simulation" is refused
            # here (its deployment is not the simulation's) before any world is opened.
            check_deployment(peek, deployment.name)
        world = open_sim_world(world_path)
        stack.enter_context(closing(world))
        register_secrets(deployment)
        trust = _trust.checked_signer(deployment, path, create=False)
        return _Ready(deployment, path, world, trust, command="resume", simulated=True)
    trust = _trust.checked_signer(deployment, path, create=False)  # before the world is opened for writing
    _check_bound(path, deployment)
    new_world, undo = open_new_world(stack, deployment)
    return _Ready(deployment, path, new_world, trust, command="resume", undo=undo)


def _prepare_readonly(stack: AsyncExitStack, settings: SessionSettings) -> _Ready:
    """``status --refresh``: the journal read-only; the configuration's deployment, else the simulation it records."""
    deployment = load_deployment(settings, required=False)
    if deployment is not None:
        register_secrets(deployment)
    path = existing_journal(settings, deployment)
    opened = stack.enter_context(open_journal_file(path, readonly=True))
    recorded = opened.get_meta("simulation")
    if deployment is not None:
        check_deployment(opened, deployment.name)
    deployment, world = deployment_and_world(deployment, recorded)
    if world is not None:
        stack.enter_context(closing(world))
    return _Ready(deployment, path, world, None, acting=False, opened=opened, simulated=bool(recorded))


def _enter_simulation(stack: AsyncExitStack, settings: SessionSettings, sim: SimulationSettings) -> _Parts:
    """``simulate``: the key, the journal, checked to hold this simulation, then the simulation's world."""
    from adapters.sim.world import SimWorld
    from config.load import simulated_deployment

    deployment = simulated_deployment(sim.nodes, Path(f"{sim.world}.d"), latency=sim.latency, faults=sim.faults)
    register_secrets(deployment)
    path = journal_path(settings, deployment)
    trust = _trust.checked_signer(deployment, path)
    assert trust is not None  # created when missing
    opened, checkpointer = _enter(stack, settings, path, deployment, trust, "simulate")
    check_simulation(opened, path, sim)
    world = SimWorld.open(_trust.create_private(sim.world), latency=sim.latency, faults=sim.faults)
    stack.push_async_callback(world.aclose)  # waits for the world's pending commits
    return deployment, path, opened, world, True, checkpointer
