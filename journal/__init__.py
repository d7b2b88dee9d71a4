"""The SQLite journal: every event of a run in a sealed hash chain, and each node's state.

The journal knows nothing of vSphere or Pexip: it stores events and node rows, holds
per-node leases, and proves its own integrity.

    from journal import Journal, Transition

    with Journal.open("run.sqlite") as j:
        j.ensure_nodes([("mgr", "management", "deployed")])
        j.commit([Transition(node="mgr", kind="step_committed", step="reserve_resources",
                             from_state="deployed", to_state="reserved")])
        assert j.verify().ok

Private modules: ``_schema`` (file and tables), ``_chain`` (hashes, seal, key file),
``_journal`` (the :class:`Journal`), ``_leases``, ``_verify``, ``_export``, ``_records``,
``_time``.
"""

from journal import kinds
from journal._export import verify_export
from journal._journal import Journal
from journal._leases import new_lease_owner
from journal._records import Event, NodeRecord, Transition, VerifyReport

__all__ = [
    "Journal",
    "Event",
    "NodeRecord",
    "Transition",
    "VerifyReport",
    "verify_export",
    "new_lease_owner",
    "kinds",
]
