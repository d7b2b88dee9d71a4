"""The simulated world a command opens: where its file is, a new one removed when the command stops before its
journal, and the simulation a journal records.

Part of :mod:`orchestrator._session`: which world a simulation keeps is decided there, with these helpers.
``adapters.sim`` is imported only when a world is opened (``status`` and ``--help`` start without it, #11).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from config.errors import ConfigError
from config.model import Deployment
from journal import Journal
from orchestrator import _trust
from orchestrator._settings import SimulationSettings, register_secrets
from orchestrator.wiring import needs_world

if TYPE_CHECKING:
    from adapters.sim.world import SimWorld

__all__ = [
    "WorldUndo",
    "check_simulation",
    "closing",
    "deployment_and_world",
    "open_new_world",
    "open_sim_world",
    "open_world",
    "recorded_deployment",
    "recorded_simulation",
    "world_path",
]


def world_path(deployment: Deployment) -> Path:
    path = Path(deployment.simulation.world)
    return path if path.is_absolute() or not deployment.source else Path(deployment.source).parent / path


@dataclass
class WorldUndo:
    """Removes the world file a command created when it then stops before its journal (armed by the caller).

    Entered before the world is opened, so that it runs after the world is closed.
    """

    path: Path | None = None
    armed: bool = False

    def __call__(self) -> None:
        if self.armed and self.path is not None:
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                p.unlink(missing_ok=True)


def open_new_world(stack: AsyncExitStack, deployment: Deployment) -> tuple[SimWorld | None, WorldUndo]:
    """The world of a command that acts; the returned undo removes it if it was created here."""
    undo = WorldUndo()
    stack.callback(undo)
    if needs_world(deployment) and not world_path(deployment).exists():
        undo.path = world_path(deployment)
    return stack.enter_context(closing(open_world(deployment))), undo


def open_world(deployment: Deployment, *, create: bool = True) -> SimWorld | None:
    """The simulated world when a system is simulated; ``create`` false (a plan): a world not there
    yet is an empty one in memory, so that a dry run leaves no file behind."""
    if not needs_world(deployment):
        return None
    from adapters.sim.world import SimWorld

    sim = deployment.simulation
    path = world_path(deployment)
    if not create and not path.exists():
        return SimWorld.open(":memory:", latency=sim.latency, faults=sim.faults)
    return SimWorld.open(_trust.create_private(path), latency=sim.latency, faults=sim.faults, shared=sim.shared)


def check_simulation(journal: Journal, path: Path, sim: SimulationSettings) -> None:
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


def deployment_and_world(deployment: Deployment | None, recorded: str | None) -> tuple[Deployment, SimWorld | None]:
    """A read-only command's deployment and its existing world (never created): the configured one, else the
    simulation the journal records (``recorded``: its ``simulation`` meta). The caller closes the world.

    Raises:
        ConfigError: no configuration and the journal is not a simulation's.
    """
    world: SimWorld | None
    if deployment is None:
        if not recorded:
            raise ConfigError(
                [("-c/--config", "this journal is not a simulation's: pass the deployment file with -c FILE")]
            )
        deployment, world = recorded_simulation(json.loads(recorded))
    else:
        world = open_world(deployment, create=False)
    register_secrets(deployment)
    return deployment, world


@contextmanager
def closing(world: SimWorld | None) -> Iterator[SimWorld | None]:
    try:
        yield world
    finally:
        if world is not None:
            world.close()


def recorded_deployment(meta: dict[str, object]) -> tuple[Deployment, Path]:
    """The deployment and world file of the simulation a journal records (``simulate`` meta)."""
    from config.load import simulated_deployment

    world_path = Path(str(meta["world"]))
    return simulated_deployment(int(str(meta["nodes"])), Path(f"{world_path}.d")), world_path


def open_sim_world(path: Path) -> SimWorld:
    from adapters.sim.world import SimWorld

    return SimWorld.open(path)


def recorded_simulation(meta: dict[str, object]) -> tuple[Deployment, SimWorld]:
    """The deployment and world of the simulation a journal records (``simulate`` meta)."""
    deployment, world_path = recorded_deployment(meta)
    return deployment, open_sim_world(world_path)
