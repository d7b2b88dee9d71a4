"""A session: the deployment, the simulated world, the journal, the systems and the fault hooks of one command.

The CLI, the HTTP API and the daemon all start here, so that which file is the journal, which
deployment a journal belongs to and which world a simulation keeps are decided in one place.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from adapters.base import Systems
from config.errors import ConfigError, DefinitionChanged, IntegrityError, JournalError
from config.model import Deployment
from config.secrets import REDACTOR
from journal import Journal, kinds
from machines.lifecycle import definition_hash
from orchestrator import _trust
from orchestrator._access import journal_files, share_with_group
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

DEFAULT_CONFIG = "orchestrator.toml"
DEFAULT_JOURNALS = ("orchestrator.journal.sqlite", "simulation.journal.sqlite")
JournalUse = Literal["create", "existing", "optional"]


@dataclass(frozen=True)
class SimulationSettings:
    """What ``simulate`` is told: the size of the deployment, the world's file, latency and faults."""

    nodes: int = 4
    latency: float = 0.0
    faults: str = ""
    world: Path = Path("simulation.world.sqlite")
    journal: Path = Path("simulation.journal.sqlite")
    effects_out: Path | None = None
    fresh: bool = False
    max_concurrency: int | None = None


@dataclass(frozen=True)
class SessionSettings:
    """What a caller knows before anything is opened.

    Args:
        config: the deployment file given by the caller; ``None``: ``$ORCHESTRATOR_CONFIG``,
            else ``./orchestrator.toml``.
        journal: the journal given by the caller; ``None``: ``$ORCHESTRATOR_JOURNAL``, the
            configuration's ``journal.path``, else the first of ``DEFAULT_JOURNALS`` that exists.
        actor: who acts, for the journal.
        allow_version_change: continue a journal written by another lifecycle definition.
        simulation: set for ``simulate``: the deployment and world are the simulation's.
    """

    config: Path | None = None
    journal: Path | None = None
    actor: str = "orchestrator"
    allow_version_change: bool = False
    simulation: SimulationSettings | None = None


# --- which files ---------------------------------------------------------------------------


def _config_path(settings: SessionSettings, required: bool) -> Path | None:
    path = settings.config or os.environ.get("ORCHESTRATOR_CONFIG") or DEFAULT_CONFIG
    if Path(path).is_file():
        return Path(path)
    if required or settings.config:
        raise ConfigError(
            [
                (
                    "-c/--config",
                    f"configuration file {path} not found; pass -c FILE, set ORCHESTRATOR_CONFIG, "
                    "or start from config/example.toml (or run `orchestrator lab up` for a local one)",
                )
            ]
        )
    return None


def load_deployment(
    settings: SessionSettings, *, required: bool = True, check_secrets: bool = True
) -> Deployment | None:
    """The deployment of the configuration file the settings name (``None`` when optional and absent)."""
    from config.load import load_deployment as load

    path = _config_path(settings, required)
    return load(path, check_secrets=check_secrets) if path else None


def journal_path(settings: SessionSettings, deployment: Deployment | None = None) -> Path:
    """The journal this process uses: given, ``$ORCHESTRATOR_JOURNAL``, the config's, or a default."""
    if settings.journal:
        return Path(settings.journal)
    if os.environ.get("ORCHESTRATOR_JOURNAL"):
        return Path(os.environ["ORCHESTRATOR_JOURNAL"])
    if deployment is not None:
        p = Path(deployment.journal.path)
        return p if p.is_absolute() or not deployment.source else Path(deployment.source).parent / p
    for candidate in DEFAULT_JOURNALS:
        if Path(candidate).exists():
            return Path(candidate)
    return Path(DEFAULT_JOURNALS[0])


def resolved_journal(settings: SessionSettings) -> Path:
    """The journal path without the deployment's secrets: the config names the journal, reading it needs none."""
    deployment = None
    if not settings.journal and not os.environ.get("ORCHESTRATOR_JOURNAL"):
        deployment = load_deployment(settings, required=False, check_secrets=False)
    return journal_path(settings, deployment)


def existing_journal(settings: SessionSettings, deployment: Deployment | None = None) -> Path:
    """Like :func:`journal_path`, and it must exist (a command that reads what ran)."""
    path = journal_path(settings, deployment) if deployment is not None else resolved_journal(settings)
    if not path.exists():
        raise ConfigError(
            [("--journal", f"journal {path} does not exist; pass --journal FILE (nothing has run with it yet?)")]
        )
    return path


# --- opening -------------------------------------------------------------------------------


def _open(path: str | Path, *, readonly: bool = False) -> Journal:
    """Journal.open, with a file that is not a journal (or cannot be opened) as bad input (exit 2)."""
    try:
        return Journal.open(path, readonly=readonly)
    except IntegrityError:
        raise
    except JournalError as exc:
        raise ConfigError([("--journal", f"{exc}; pass --journal with a journal of this orchestrator")]) from exc


def open_readonly_journal(path: str | Path) -> Journal:
    """An existing journal, read-only: nothing is created or written (``status``, ``verify``, ``export``)."""
    return _open(path, readonly=True)


def _check_deployment(journal: Journal, identity: str) -> None:
    recorded = journal.deployment
    if recorded is not None and recorded != identity:
        raise ConfigError(
            [
                (
                    "deployment.name",
                    (
                        f"journal {journal.path} belongs to deployment {recorded!r}, not {identity!r}: refusing to use it "
                        "for another deployment; give this deployment its own journal (journal.path or --journal)"
                    ),
                )
            ]
        )


@contextmanager
def open_journal(
    path: str | Path,
    *,
    allow_version_change: bool = False,
    actor: str = "orchestrator",
    deployment: str | None = None,
    trust: Trust | None = None,
    what: str | None = None,
    bind: bool = True,
) -> Iterator[Journal]:
    """Open the journal and check it was written by this lifecycle definition.

    Args:
        deployment: the deployment identity: another deployment's journal is refused (exit 2),
            an unbound one is bound to it, or (``bind`` false: ``resume``) refused: nothing to do.
        trust: with ``what``: verify the journal against this key before anything is written
            (exit 4 when it fails); ``what`` says what would be refused ("run", "approve").

    Raises:
        DefinitionChanged: the journal was written by another definition and
            ``allow_version_change`` is not set.
    """
    journal = _open(path)
    try:
        if deployment is not None:
            _check_deployment(journal, deployment)
            if not bind and journal.deployment is None:
                raise ConfigError(
                    [
                        (
                            "NODE",
                            f"nothing to {what or 'do'}: journal {path} holds no run of deployment "
                            f"{deployment!r}; start one with `orchestrator run`",
                        )
                    ]
                )
        if what is not None:
            _trust.verify_before_acting(journal, trust, what=what)
        if deployment is not None and bind:
            journal.bind_deployment(deployment)
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
            journal.record(
                node=None, kind=kinds.DEFINITION_CHANGED, actor=actor, payload={"from": recorded, "to": current}
            )
            journal.set_meta("definition_hash", current)
        yield journal
    finally:
        journal.close()


def _operator_trust(deployment: Deployment | None, path: Path) -> Trust | None:
    if deployment is not None:
        return _trust.signer_for(deployment, path, create=False)
    return _trust.trusted_key(None, path)


@contextmanager
def open_existing_journal(settings: SessionSettings, *, readonly: bool = False) -> Iterator[Journal]:
    """The journal the settings resolve to, which must exist (``status``, ``approve``, ``cert import``...).

    ``readonly``: nothing is created or written (``status``). Otherwise the journal is verified
    against the operator's key first (exit 4 when it fails), must belong to the configured
    deployment (exit 2), and what the command wrote is signed in a checkpoint afterwards.
    """
    path = existing_journal(settings)
    if readonly:
        with open_readonly_journal(path) as journal:
            yield journal
        return
    deployment = load_deployment(settings, required=False, check_secrets=False)
    trust = _operator_trust(deployment, path)
    with open_journal(
        path,
        allow_version_change=settings.allow_version_change,
        actor=settings.actor,
        deployment=deployment.name if deployment is not None else None,
        trust=trust,
        what="change",
        bind=False,
    ) as journal:
        yield journal
        if trust is not None:
            Checkpointer(journal, trust, open_syslog(deployment) if deployment is not None else None).now()


def register_secrets(deployment: Deployment) -> None:
    """Read every secret once so the redactor knows the values before anything is logged."""
    for secret in deployment.secrets():
        try:
            REDACTOR.register(secret.reveal())
        except (KeyError, OSError):
            pass  # validation reported it already when it mattered


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


def _open_world(deployment: Deployment) -> SimWorld | None:
    if not needs_world(deployment):
        return None
    from adapters.sim.world import SimWorld

    sim = deployment.simulation
    path = Path(sim.world)
    if not path.is_absolute() and deployment.source:
        path = Path(deployment.source).parent / path
    return SimWorld.open(_trust.create_private(path), latency=sim.latency, faults=sim.faults)


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
        world = stack.enter_context(_closing(_open_world(deployment)))
        if not path.exists():
            return deployment, path, None, world, False, None
        opened = stack.enter_context(_open(path, readonly=True))
        _check_deployment(opened, deployment.name)
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
        with _open(path, readonly=True) as peek:
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
