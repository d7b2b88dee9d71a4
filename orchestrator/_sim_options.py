"""Checks of ``simulate``'s options that need the simulated deployment (kept out of ``cli.py``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from config.errors import ConfigError

__all__ = ["unknown_fault_nodes"]


def unknown_fault_nodes(faults: str, nodes: int) -> str | None:
    """Why ``faults`` names a node that ``nodes`` simulated nodes do not have; ``None`` when it names none.

    A malformed spec or node count is left to ``api.simulate``, which reports it with the forms it takes.
    """
    if "@" not in faults or nodes < 1:
        return None
    from adapters.sim.world import FaultPlan
    from config import simulated_deployment

    try:
        plan = FaultPlan.parse(faults)
        with tempfile.TemporaryDirectory() as tmp:
            known = [n.name for n in simulated_deployment(nodes, Path(tmp)).nodes]
    except ConfigError:
        return None
    unknown = sorted({p.node for p in (*plan.permanent, *plan.exits) if p.node and p.node not in known})
    if not unknown:
        return None
    shown = ", ".join(known if len(known) <= 6 else [*known[:5], "...", known[-1]])
    return f"no node {', '.join(unknown)} among the {nodes} simulated nodes ({shown})"
