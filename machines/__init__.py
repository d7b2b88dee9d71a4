"""The lifecycle of a Pexip node under the secure-mode guide: states, transitions, steps, guards.

Pure data and pure functions: an auditor can read ``machines/lifecycle.py`` as the lifecycle.
"""

from machines.lifecycle import (
    DEPLOYED,
    FAILED,
    GATES,
    LDAP_AUTHENTICATED,
    MILESTONES,
    NEW,
    STATES,
    STEPS,
    TRANSITIONS,
    WAITING,
    definition_hash,
    milestone_index,
)
from machines.node import Fleet, NodeModel
from machines.plan import Action, Blocked, Done, Held, RunStep, Start, Stopped, Wait, next_action, remaining_steps

__all__ = [
    "DEPLOYED",
    "FAILED",
    "GATES",
    "LDAP_AUTHENTICATED",
    "MILESTONES",
    "NEW",
    "STATES",
    "STEPS",
    "TRANSITIONS",
    "WAITING",
    "definition_hash",
    "milestone_index",
    "Fleet",
    "NodeModel",
    "Action",
    "Blocked",
    "Done",
    "Held",
    "RunStep",
    "Start",
    "Stopped",
    "Wait",
    "next_action",
    "remaining_steps",
]
