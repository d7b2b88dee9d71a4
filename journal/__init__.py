"""The SQLite journal: every event of a run in a hash chain, each node's state, signed checkpoints.

The journal knows nothing of vSphere or Pexip: it stores events and node rows, holds
per-node leases, and proves its own integrity: node rows are a cache that must equal the
state derived from the events, and Ed25519-signed checkpoints let an auditor holding
only the public key prove who wrote the chain.

    from journal import Journal, Signer, Transition, VerifyStatus

    signer = Signer.from_pem(private_key_pem)          # the caller resolves the secret
    with Journal.open("run.sqlite", deployment="acme-prod") as j:
        j.ensure_nodes([("mgr", "management", "deployed")])
        j.commit([Transition(node="mgr", kind="step_committed", step="reserve_resources",
                             from_state="deployed", to_state="reserved")])
        j.checkpoint(signer)                           # end of run, every N events
        assert j.verify(public_key=signer.public_key_pem()).status == VerifyStatus.VERIFIED

Private modules: ``_schema`` (file and tables), ``_chain`` (hashes, head record),
``_prepare`` (transitions to rows), ``_journal`` (the :class:`Journal`), ``_reader``,
``_leases``, ``_derive`` (node rows from events), ``_signing`` (Ed25519),
``_checkpoints``, ``_verify``, ``_export``, ``_files`` (0600, atomic writes),
``_records``, ``_time``, ``_latency`` (commit latency).
"""

from journal import kinds
from journal._derive import NodeRecordFields, derive_nodes
from journal._export import verify_export
from journal._journal import Journal
from journal._latency import COMMIT_LATENCY
from journal._leases import new_lease_owner
from journal._records import Event, NodeRecord, Transition, VerifyReport, VerifyStatus
from journal._signing import Signer, generate_signing_key, load_public_key, public_key_pem

__all__ = [
    "Journal",
    "Event",
    "NodeRecord",
    "NodeRecordFields",
    "Transition",
    "VerifyReport",
    "VerifyStatus",
    "Signer",
    "derive_nodes",
    "generate_signing_key",
    "load_public_key",
    "public_key_pem",
    "verify_export",
    "new_lease_owner",
    "kinds",
    "COMMIT_LATENCY",
]
