"""The kinds of event the journal holds: one name each, used by every writer and reader.

The journal itself interprets none of them but ``NODE_REGISTERED``, ``EXPORT_SEAL``, ``DEPLOYMENT_BOUND`` and
(to check the ``definition_hash`` meta value against them) ``DEFINITION_RECORDED`` and ``DEFINITION_CHANGED``;
the engine, the library API and (for integrity checks) the verifier agree on the rest
through these constants, so a misspelt kind is an import error, not a silent new kind.
"""

from __future__ import annotations

__all__ = [
    "NODE_REGISTERED",
    "DEFINITION_RECORDED",
    "DEFINITION_CHANGED",
    "MILESTONE_STARTED",
    "STEP_STARTED",
    "STEP_RETRY",
    "STEP_COMMITTED",
    "STEP_FAILED",
    "RETRIED",
    "REWOUND",
    "GATE_WAITING",
    "GATE_OPENED",
    "GATE_PASSED",
    "MAINTENANCE_ON",
    "MAINTENANCE_OFF",
    "EXPORT_SEAL",
    "DEPLOYMENT_BOUND",
    "RUN_RECAP",
    "RUN_STARTED",
    "DRIFT_DETECTED",
    "STANDBY_POWER_OFF",
    "AUDIT_REPORT",
    "TRUST_ON_FIRST_USE",
    "HEAD_ACCEPTED",
    "ALL",
]

NODE_REGISTERED = "node_registered"  # a node of the deployment first seen (state new)
DEFINITION_RECORDED = "definition_recorded"  # the lifecycle definition's hash, at the journal's first use
DEFINITION_CHANGED = "definition_changed"  # resumed under another definition (--allow-version-change)
MILESTONE_STARTED = "milestone_started"  # a milestone's transient state entered
STEP_STARTED = "step_started"  # durable before the step's side effect
STEP_RETRY = "step_retry"  # an attempt failed with a retryable error; another follows
STEP_COMMITTED = "step_committed"  # the step's effect verified; the node's next place
STEP_FAILED = "step_failed"  # the node failed (not retryable, or out of attempts)
RETRIED = "retried"  # an operator resumed a failed node
REWOUND = "rewound"  # resume --from-step
GATE_WAITING = "gate_waiting"  # a step waits on a gate (visible waiting state)
GATE_OPENED = "gate_opened"  # an approval, a certificate, the CA's answer
GATE_PASSED = "gate_passed"  # the waiting node went on through an open gate
MAINTENANCE_ON = "maintenance_on"
MAINTENANCE_OFF = "maintenance_off"
EXPORT_SEAL = "export_seal"  # the last line of an export (never in the database)
DEPLOYMENT_BOUND = "deployment_bound"  # the journal bound to its deployment identity (once)
RUN_RECAP = "run_recap"  # run-level: a run's end, per node ok/changed/retried/waiting/failed (orchestrator._recap)
RUN_STARTED = "run_started"  # run/resume/simulate began: policy and config hashes, command line, user, version
DRIFT_DETECTED = "drift_detected"  # a refresh found a completed step differing from the world (orchestrator._drift)
STANDBY_POWER_OFF = "standby_power_off"  # a contingency deployment's VM powered off once built (orchestrator._standby)
AUDIT_REPORT = "audit_report"  # `orchestrator audit` wrote a report: its SHA-256, format, file and summary
# A peer's host key or certificate accepted on first use (explicit trust_on_first_use): system, address,
# fingerprint; later runs pin it (orchestrator._first_use)
TRUST_ON_FIRST_USE = "trust_on_first_use"
# An operator accepted events no signature covered (`journal sign-head --by WHO`): who, why, the events (seq range,
# a summary), the head accepted; its own commit signs the head (orchestrator._head_accept)
HEAD_ACCEPTED = "head_accepted"

ALL = frozenset(
    {
        NODE_REGISTERED,
        DEFINITION_RECORDED,
        DEFINITION_CHANGED,
        MILESTONE_STARTED,
        STEP_STARTED,
        STEP_RETRY,
        STEP_COMMITTED,
        STEP_FAILED,
        RETRIED,
        REWOUND,
        GATE_WAITING,
        GATE_OPENED,
        GATE_PASSED,
        MAINTENANCE_ON,
        MAINTENANCE_OFF,
        EXPORT_SEAL,
        DEPLOYMENT_BOUND,
        RUN_RECAP,
        RUN_STARTED,
        DRIFT_DETECTED,
        STANDBY_POWER_OFF,
        AUDIT_REPORT,
        TRUST_ON_FIRST_USE,
        HEAD_ACCEPTED,
    }
)
