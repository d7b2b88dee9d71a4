"""Keys and certificates trusted on first use: journaled when an adapter accepts one, pinned afterwards.

An adapter never imports the journal (DESIGN.md, layers): the real console, Management API and
provisioning clients report what they accepted as :class:`adapters.base.FirstUseTrust`, and the
engine journals each one as a ``trust_on_first_use`` event of the node whose step met it. At the
start of every later run the journaled ones are handed back (:meth:`adapters.base.Systems.pin_first_use`),
so that "first use" means the first use ever recorded for this deployment, not the first of each
process: a peer that later shows another key is refused.

The event is committed after the attempt that met the key (the key exchange and the first request
happen in one call of the adapter); a crash in between leaves the key unjournaled, and the next run
trusts and journals it then, exactly as on a first run.
"""

from __future__ import annotations

from adapters.base import FirstUseTrust, Systems
from journal import Journal, Transition, kinds

__all__ = ["journaled_trusts", "pin_journaled", "trust_transitions"]


def journaled_trusts(journal: Journal) -> list[FirstUseTrust]:
    """Every key the journal says was trusted on first use, oldest first."""
    trusts = []
    for event in journal.events(kinds=[kinds.TRUST_ON_FIRST_USE]):
        p = event.payload
        if isinstance(p, dict) and {"system", "address", "fingerprint"} <= set(p):
            trusts.append(FirstUseTrust(str(p["system"]), str(p["address"]), str(p["fingerprint"])))
    return trusts


def pin_journaled(journal: Journal, systems: Systems) -> None:
    """Hand the journaled first-use keys back to the adapters, which pin them from now on."""
    trusts = journaled_trusts(journal)
    if trusts:
        systems.pin_first_use(trusts)


def trust_transitions(systems: Systems, node: str, step: str | None, actor: str) -> list[Transition]:
    """One ``trust_on_first_use`` event per key the adapters accepted since the last call."""
    return [
        Transition(
            node=node,
            kind=kinds.TRUST_ON_FIRST_USE,
            step=step,
            actor=actor,
            payload={"system": t.system, "address": t.address, "fingerprint": t.fingerprint},
        )
        for t in systems.first_use_trusts()
    ]
