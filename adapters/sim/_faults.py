"""The faults a simulation injects (``--faults``), parsed into a plan the world carries out.

Kept apart from :mod:`adapters.sim.world` so the plan can be read and checked (the CLI
refuses a fault naming an unknown step or node) without opening a world.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.errors import ConfigError

__all__ = ["EXIT_CODE", "FaultPlan", "FaultPoint"]

# EX_SOFTWARE: what a process killed by an injected ``exit`` fault returns.
EXIT_CODE = 70

_FAULT_FORMS = (
    "use comma-separated items: transient=RATE (a number from 0 to 1), "
    "permanent=STEP[@NODE], exit=STEP[@NODE] (both repeatable), seed=N (an integer); "
    "for example --faults 'transient=0.05,exit=lock_bios@conf-1,seed=7'"
)


@dataclass(frozen=True)
class FaultPoint:
    """A step, and optionally the one node, where a fault is injected."""

    step: str
    node: str | None = None  # None: every node

    def matches(self, node: str, step: str) -> bool:
        return self.step == step and (self.node is None or self.node == node)

    def __str__(self) -> str:
        return self.step if self.node is None else f"{self.step}@{self.node}"


@dataclass(frozen=True)
class FaultPlan:
    """Which faults a simulation injects, parsed from ``--faults``.

    ``transient``: probability that any twin call raises ``Unreachable`` before it changes
    anything. ``permanent``: steps whose every attempt is ``Rejected``
    (:meth:`SimWorld.before_step`). ``exits``: steps after whose side effects the process
    dies, once per world (:meth:`SimWorld.after_apply`).
    """

    transient: float = 0.0
    permanent: tuple[FaultPoint, ...] = ()
    exits: tuple[FaultPoint, ...] = ()
    seed: int | None = None

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Parse ``"transient=0.1,permanent=STEP@NODE,exit=STEP,seed=7"``.

        Raises:
            ConfigError: naming ``--faults``, the bad item and the allowed forms.
        """
        transient = 0.0
        permanent: list[FaultPoint] = []
        exits: list[FaultPoint] = []
        seed: int | None = None
        problems: list[tuple[str, str]] = []
        for raw in (spec or "").split(","):
            item = raw.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not value:
                problems.append(("--faults", f"{item!r} is not NAME=VALUE; {_FAULT_FORMS}"))
            elif name == "transient":
                try:
                    transient = float(value)
                except ValueError:
                    transient = -1.0
                if not 0.0 <= transient <= 1.0:
                    problems.append(("--faults", f"transient={value} must be a rate from 0 to 1; {_FAULT_FORMS}"))
            elif name in ("permanent", "exit"):
                step, at, node = value.partition("@")
                if not step.strip() or (at and not node.strip()):
                    problems.append(("--faults", f"{item!r} needs STEP or STEP@NODE; {_FAULT_FORMS}"))
                    continue
                point = FaultPoint(step.strip(), node.strip() or None)
                (permanent if name == "permanent" else exits).append(point)
            elif name == "seed":
                try:
                    seed = int(value)
                except ValueError:
                    problems.append(("--faults", f"seed={value} must be an integer; {_FAULT_FORMS}"))
            else:
                problems.append(("--faults", f"unknown fault {name!r}; {_FAULT_FORMS}"))
        if problems:
            raise ConfigError(problems)
        return cls(transient, tuple(permanent), tuple(exits), seed)

    def __str__(self) -> str:
        items = [f"transient={self.transient:g}"] if self.transient else []
        items += [f"permanent={p}" for p in self.permanent]
        items += [f"exit={p}" for p in self.exits]
        items += [f"seed={self.seed}"] if self.seed is not None else []
        return ",".join(items)
