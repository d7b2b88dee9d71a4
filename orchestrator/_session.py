"""A session: the deployment, the simulated world, the journal, the systems and the fault hooks of one command.

The CLI, the HTTP API and the daemon all start here, so that which file is the journal, which
deployment a journal belongs to and which world a simulation keeps are decided in one place.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from adapters.base import Systems
from config.errors import ConfigError
from config.model import Deployment
from journal import Journal
from orchestrator import _trust
from orchestrator._access import journal_files, share_with_group
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
from orchestrator.wiring import needs_world, open_syslog, open_systems

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

JournalUse = Literal["create", "existing", "optional"]


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

    @property
    def hooks(self) -> SimWorld | None:
        """The engine's fault hooks: the simulated world injects its own faults."""
        return self.world


def _open_world(deployment: Deployment, *, create: bool = True) -> SimWorld | None:
    """The simulated world when a system is simulated; ``create`` false (a plan): a world not there
    yet is an empty one in memory, so that a dry run leaves no file behind."""
    if not needs_world(deployment):
        return None
    from adapters.sim.world import SimWorld

    sim = deployment.simulation
    path = Path(sim.world)
    if not path.is_absolute() and deployment.source:
        path = Path(deployment.source).parent / path
    if not create and not path.exists():
        return SimWorld.open(":memory:", latency=sim.latency, faults=sim.faults)
    return SimWorld.open(_trust.create_private(path), latency=sim.latency, faults=sim.faults, shared=sim.shared)


def _check_simulation(journal: Journal, path: Path, sim: SimulationSettings) -> None:
    """The journal holds this simulation (same nodes, same world), or a new one starts in it."""
    wanted = {"nodes": sim.nodes, "world": str(sim.world)}
    recorded = journal.get_meta("simulation")
    if recorded is None:
        journal.set_meta("simulation", json.dumps(wanted))
        return
    before = json.loads(recorded)
    for option, key in (("--nodes", "nodes"), ("--world", "world")):
        if before.get(key) != wanted[key]:
            raise ConfigError(
                [
                    (
                        option,
                        f"the journal {path} holds a simulation with {option} {before.get(key)}, "
                        f"not {wanted[key]}; pass the same {option} to resume, "
                        "or --fresh to start over",
                    )
                ]
            )


_Parts = tuple[Deployment, Path, "Journal | None", "SimWorld | None", bool, "Checkpointer | None"]


@asynccontextmanager
async def open_session(settings: SessionSettings, *, journal: JournalUse = "create") -> AsyncIterator[Session]:
    """Open what a command needs; on exit close the systems, then the world, then the journal.

    Each is closed even when closing an earlier one raises (the first error is re-raised).

    Args:
        journal: ``"create"`` (``run``, ``simulate``): the journal is made when new;
            ``"existing"`` (``resume``): it must exist, and without a configuration file the
            deployment is the simulation it records; ``"optional"`` (``run --dry-run``): opened
            only when it exists, else the session has none.

    Example::

        async with open_session(SessionSettings(config=Path("orchestrator.toml"))) as session:
            report = await drive(session.deployment, session.journal, systems=session.systems)
    """
    async with AsyncExitStack() as stack:
        if settings.simulation is not None:
            parts = _enter_simulation(stack, settings, settings.simulation)
        elif journal == "existing":
            parts = _enter_existing(stack, settings)
        else:
            parts = _enter_configured(stack, settings, optional=journal == "optional")
        deployment, path, opened, world, simulated, checkpointer = parts
        systems = open_systems(deployment, world, journal=path)
        stack.push_async_callback(systems.aclose)
        yield Session(settings, deployment, path, opened, world, systems, simulated, checkpointer)


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
    """The journal of a command that acts: verified, bound, its start recorded and signed."""
    opened = open_journal(
        path,
        allow_version_change=settings.allow_version_change,
        actor=settings.actor,
        deployment=deployment.name,
        trust=trust,
        what=command,
        bind=bind,
    )
    journal = stack.enter_context(opened)
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
    checkpointer = Checkpointer(
        journal,
        trust,
        open_syslog(deployment),
        every=_trust.checkpoint_every(deployment),
        group=deployment.journal.group,
    )
    checkpointer.now()  # the opening records are signed before the first step: a fresh journal verifies
    stack.push_async_callback(checkpointer.aclose)  # before the journal closes: the end-of-run checkpoint
    return journal, checkpointer


def _enter_configured(stack: AsyncExitStack, settings: SessionSettings, *, optional: bool) -> _Parts:
    """``run``, ``run --dry-run``: the configuration's deployment, its key, its world, then the journal.

    The configuration and the key are checked before anything is created; the world opens
    before the journal: a world another process holds stops the run before the journal is touched.
    A dry run opens an existing journal read-only and creates nothing.
    """
    deployment = load_deployment(settings)
    assert deployment is not None  # required: a missing file raised
    register_secrets(deployment)
    path = journal_path(settings, deployment)
    if optional:
        world = stack.enter_context(_closing(_open_world(deployment, create=False)))
        if not path.exists():
            return deployment, path, None, world, False, None
        opened = stack.enter_context(open_journal_file(path, readonly=True))
        check_deployment(opened, deployment.name)
        return deployment, path, opened, world, bool(opened.get_meta("simulation")), None
    trust = _trust.checked_signer(deployment, path)
    world = stack.enter_context(_closing(_open_world(deployment)))
    opened, checkpointer = _enter(stack, settings, path, deployment, trust, "run")
    recorded = opened.get_meta("simulation")
    return deployment, path, opened, world, bool(recorded), checkpointer


def _enter_existing(stack: AsyncExitStack, settings: SessionSettings) -> _Parts:
    """``resume``: the journal first; without a configuration, the simulation it records and its world."""
    deployment = load_deployment(settings, required=False)
    if deployment is not None:
        register_secrets(deployment)
    path = existing_journal(settings, deployment)
    world: SimWorld | None
    if deployment is None:
        with open_journal_file(path, readonly=True) as peek:
            recorded = peek.get_meta("simulation")
        if not recorded:
            raise ConfigError(
                [("-c/--config", "this journal is not a simulation's: pass the deployment file with -c FILE")]
            )
        deployment, world = _recorded_simulation(json.loads(recorded))
        stack.enter_context(_closing(world))
        register_secrets(deployment)
        trust = _trust.checked_signer(deployment, path)
    else:
        trust = _trust.checked_signer(deployment, path)  # before the world is opened for writing
        world = stack.enter_context(_closing(_open_world(deployment)))
    opened, checkpointer = _enter(stack, settings, path, deployment, trust, "resume", bind=False)
    return deployment, path, opened, world, bool(opened.get_meta("simulation")), checkpointer


def _enter_simulation(stack: AsyncExitStack, settings: SessionSettings, sim: SimulationSettings) -> _Parts:
    """``simulate``: the key, the journal, checked to hold this simulation, then the simulation's world."""
    from adapters.sim.world import SimWorld
    from config.load import simulated_deployment

    deployment = simulated_deployment(sim.nodes, Path(f"{sim.world}.d"), latency=sim.latency, faults=sim.faults)
    register_secrets(deployment)
    path = journal_path(settings, deployment)
    trust = _trust.checked_signer(deployment, path)
    opened, checkpointer = _enter(stack, settings, path, deployment, trust, "simulate")
    _check_simulation(opened, path, sim)
    world = SimWorld.open(_trust.create_private(sim.world), latency=sim.latency, faults=sim.faults)
    stack.push_async_callback(world.aclose)  # waits for the world's pending commits
    return deployment, path, opened, world, True, checkpointer


@contextmanager
def _closing(world: SimWorld | None) -> Iterator[SimWorld | None]:
    try:
        yield world
    finally:
        if world is not None:
            world.close()


def _recorded_simulation(meta: dict[str, object]) -> tuple[Deployment, SimWorld]:
    """The deployment and world of the simulation a journal records (``simulate`` meta)."""
    from adapters.sim.world import SimWorld
    from config.load import simulated_deployment

    world_path = Path(str(meta["world"]))
    deployment = simulated_deployment(int(str(meta["nodes"])), Path(f"{world_path}.d"))
    return deployment, SimWorld.open(world_path)
