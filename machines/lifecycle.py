"""The secure-mode lifecycle of a Pexip node, as data.

Read this file as the lifecycle itself: every node goes

    new -> deployed -> reserved -> bios_locked -> installed -> hardened -> certified -> ldap_authenticated

Each arrow is a *milestone*: a transient state (``deploying``, ``reserving``...) in
which the milestone's steps run one by one (``STEPS``), each journaled before its
side effect and committed after it. A step may wait on a *gate* (an operator's
approval, the CA's signed certificate), shown as a visible waiting state. A step
that fails for good moves the node to ``failed``, remembering the state it failed
from, so ``retry`` returns exactly there.

Pure: no asyncio, no I/O, no clock. The engine builds one ``transitions``
``AsyncMachine`` from ``STATES`` and ``TRANSITIONS`` and adds every node model to it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "NEW",
    "DEPLOYED",
    "RESERVED",
    "BIOS_LOCKED",
    "INSTALLED",
    "HARDENED",
    "CERTIFIED",
    "LDAP_AUTHENTICATED",
    "FAILED",
    "MILESTONES",
    "TRANSIENT",
    "TARGET_OF",
    "TRANSIENT_OF",
    "WAITING",
    "GATE_STATE",
    "GATE_OF_STEP",
    "APPROVAL_GATES",
    "STABLE",
    "STATES",
    "TRANSITIONS",
    "STEPS",
    "MANAGEMENT_PREREQUISITE",
    "MANAGEMENT_STEP_PREREQUISITE",
    "management_lacks",
    "GATES",
    "TERMINAL",
    "definition_hash",
    "milestone_index",
]

# --- States ---------------------------------------------------------------------------

NEW = "new"  # declared in the deployment, nothing done yet
DEPLOYED = "deployed"
RESERVED = "reserved"
BIOS_LOCKED = "bios_locked"
INSTALLED = "installed"
HARDENED = "hardened"
CERTIFIED = "certified"
LDAP_AUTHENTICATED = "ldap_authenticated"
FAILED = "failed"

MILESTONES: tuple[str, ...] = (
    DEPLOYED,
    RESERVED,
    BIOS_LOCKED,
    INSTALLED,
    HARDENED,
    CERTIFIED,
    LDAP_AUTHENTICATED,
)

# The transient state in which each milestone's steps run, and the milestone it targets.
TRANSIENT_OF: dict[str, str] = {
    DEPLOYED: "deploying",
    RESERVED: "reserving",
    BIOS_LOCKED: "bios_locking",
    INSTALLED: "installing",
    HARDENED: "hardening",
    CERTIFIED: "certifying",
    LDAP_AUTHENTICATED: "ldap_authenticating",
}
TARGET_OF: dict[str, str] = {t: m for m, t in TRANSIENT_OF.items()}
TRANSIENT: tuple[str, ...] = tuple(TRANSIENT_OF.values())

# Gates: a step that needs the outside world first. Each gate has its own visible
# waiting state, and belongs to exactly one transient state (so opening it has one
# destination). ``opens_by`` says who opens it: "operator" (`orchestrator approve`) or
# "ca" (the CA's signed certificate, collected or imported with `orchestrator cert import`).
GATES: dict[str, dict[str, str]] = {
    # The security wizard is irreversible (no OS access afterwards): an operator approves it.
    "security_wizard": {
        "state": "awaiting_approval",
        "transient": "hardening",
        "step": "security_wizard",
        "opens_by": "operator",
        "how": "approve it: orchestrator approve {node} security_wizard --by WHO --reason TEXT",
    },
    # The CA's signed certificate for the node's CSR.
    "certificate": {
        "state": "awaiting_certificate",
        "transient": "certifying",
        "step": "install_certificate",
        "opens_by": "ca",
        "how": "send the node's CSR to the CA, then: orchestrator cert import {node} SIGNED.pem",
    },
    # bios.password_method = "operator": a person types the BIOS password at the console.
    "bios_password": {
        "state": "awaiting_operator",
        "transient": "bios_locking",
        "step": "lock_bios",
        "opens_by": "operator",
        "how": (
            "set the BIOS supervisor password at the VM console, then: "
            "orchestrator approve {node} bios_password --by WHO"
        ),
    },
}
GATE_STATE: dict[str, str] = {g: spec["state"] for g, spec in GATES.items()}
GATE_OF_STEP: dict[str, str] = {spec["step"]: g for g, spec in GATES.items()}
# Gates a person opens with `orchestrator approve`; the certificate gate opens with the CA's answer.
APPROVAL_GATES = frozenset(g for g, spec in GATES.items() if spec["opens_by"] == "operator")
WAITING: tuple[str, ...] = tuple(spec["state"] for spec in GATES.values())

STABLE = frozenset({NEW, *MILESTONES})
TERMINAL = frozenset({LDAP_AUTHENTICATED})
STATES: tuple[str, ...] = (NEW, *MILESTONES, *TRANSIENT, *WAITING, FAILED)


def milestone_index(state: str) -> int:
    """0 for ``new``, 1..7 for the milestones; transient/waiting count as their last milestone."""
    if state == NEW:
        return 0
    if state in MILESTONES:
        return MILESTONES.index(state) + 1
    for gate in GATES.values():
        if gate["state"] == state:
            state = gate["transient"]
    if state in TARGET_OF:
        return MILESTONES.index(TARGET_OF[state])
    return -1


def _previous(milestone: str) -> str:
    i = MILESTONES.index(milestone)
    return NEW if i == 0 else MILESTONES[i - 1]


# --- Transitions ------------------------------------------------------------------------
# Conditions are names of guard methods on the node model (machines.node.NodeModel);
# the machine runs with send_event=True so a guard sees the event (destination, kwargs).

TRANSITIONS: list[dict[str, Any]] = [
    # start: begin the next milestone from the last one reached.
    *(
        {"trigger": "start", "source": _previous(m), "dest": TRANSIENT_OF[m], "conditions": "prerequisites_met"}
        for m in MILESTONES
    ),
    # complete: the milestone's last step committed.
    *({"trigger": "complete", "source": t, "dest": TARGET_OF[t], "conditions": "steps_done"} for t in TRANSIENT),
    # wait: a step needs a gate that is not open yet.
    *(
        {"trigger": "wait", "source": g["transient"], "dest": g["state"], "conditions": "gate_matches"}
        for g in GATES.values()
    ),
    # open_gate: the gate was opened (approval, certificate, operator); the step runs.
    *({"trigger": "open_gate", "source": g["state"], "dest": g["transient"]} for g in GATES.values()),
    # fail: a step failed for good (not retryable, or out of attempts), or a gate was refused.
    {"trigger": "fail", "source": [*TRANSIENT, *WAITING], "dest": FAILED, "before": "remember_failure"},
    # retry: an operator resumes a failed node; it goes back to where it failed.
    *(
        {"trigger": "retry", "source": FAILED, "dest": s, "conditions": "returns_to_failed_from"}
        for s in (*TRANSIENT, *WAITING)
    ),
    # rewind: `resume --from-step`; back to an earlier (or the current) milestone's steps.
    *(
        {
            "trigger": "rewind",
            "source": [NEW, *MILESTONES, *TRANSIENT, *WAITING, FAILED],
            "dest": t,
            "conditions": "rewind_allowed",
        }
        for t in TRANSIENT
    ),
]

# --- Steps of each milestone, per role -----------------------------------------------------
# The guide's procedures in the guide's own words. (The host-environment preflight is not
# a node step: it runs once before any change, so that a bad deployment changes nothing.)
# Management Node and Conferencing Node differ: a Conferencing Node is deployed from the
# Manager's deployment file, gets its configuration from the Manager (no wizards of its
# own), and its certificate carries its SIP TLS FQDN.

STEPS: dict[str, dict[str, tuple[str, ...]]] = {
    "management": {
        DEPLOYED: ("deploy_ova",),
        RESERVED: ("reserve_resources",),
        BIOS_LOCKED: ("lock_bios",),
        INSTALLED: ("installation_wizard", "verify_admin_login"),
        HARDENED: ("security_wizard", "global_settings", "network_services", "snmpv3", "location_qos"),
        CERTIFIED: ("trusted_ca_chain", "create_csr", "install_certificate", "sip_tls_verification"),
        LDAP_AUTHENTICATED: (
            "administrator_roles",
            "ldap_connection",
            "ldap_role_mapping",
            "client_certificate_auth",
            "disable_local_auth",
        ),
    },
    "conferencing": {
        DEPLOYED: ("deployment_file", "deploy_ova"),
        RESERVED: ("reserve_resources",),
        BIOS_LOCKED: ("lock_bios",),
        # provision_node uploads the bootstrap file the Manager issued (kept encrypted since
        # deployment_file) to the generic OVA's provisioning interface: after lock_bios, which
        # boots the VM, so the node gets its configuration only once reserved and locked.
        INSTALLED: ("provision_node", "register_node"),
        HARDENED: ("snmpv3", "config_sync"),
        CERTIFIED: ("create_csr", "install_certificate", "sip_tls_fqdn"),
        LDAP_AUTHENTICATED: ("authentication_sync",),
    },
}

# Cross-node guards: a Conferencing Node starts a milestone only when the Management
# Node has reached the given milestone.
MANAGEMENT_PREREQUISITE: dict[str, str] = {
    DEPLOYED: HARDENED,  # guide: complete the Manager's bootstrap before any Conferencing Node
    LDAP_AUTHENTICATED: LDAP_AUTHENTICATED,  # the lock-down is platform-wide, set on the Manager
}
# The same for one step of the Manager's: a Conferencing Node starts its certified milestone once the
# Manager trusts the CA (its trusted_ca_chain committed). Before that, completing the node's CSR consumed
# it for a certificate the Manager did not recognise, and the node failed asking for a new CSR (found by
# the stateful test with the Manager in maintenance). A step, not the Manager's whole milestone: every
# Conferencing Node's CSR can still go to the CA while the Manager waits for its own certificate.
MANAGEMENT_STEP_PREREQUISITE: dict[str, str] = {CERTIFIED: "trusted_ca_chain"}


def management_lacks(milestone: str, state: str | None, step: str | None) -> str | None:
    """What the Management Node (at ``state``, its step in progress ``step``) must reach before a Conferencing
    Node starts ``milestone``: a milestone, or a step of its own; None when nothing."""
    prerequisite = MANAGEMENT_PREREQUISITE.get(milestone)
    if prerequisite and (state is None or milestone_index(state) < milestone_index(prerequisite)):
        return prerequisite
    needed = MANAGEMENT_STEP_PREREQUISITE.get(milestone)
    if needed is None:
        return None
    of = next(m for m, steps in STEPS["management"].items() if needed in steps)
    if state is None or milestone_index(state) < milestone_index(_previous(of)):
        return needed
    if milestone_index(state) >= milestone_index(of):
        return None
    steps = STEPS["management"][of]
    # At the milestone before (not started yet), or inside it: its step in progress tells which committed.
    in_it = state not in MILESTONES and step in steps
    return None if in_it and steps.index(step) > steps.index(needed) else needed


def definition_hash() -> str:
    """SHA-256 of the lifecycle definition; the journal refuses another one on resume."""
    import hashlib  # here, not at the top: `orchestrator --help` starts without OpenSSL's hashes (#11)

    data = {
        "states": STATES,
        "transitions": TRANSITIONS,
        "steps": STEPS,
        # Without ``opens_by``: who opens a gate changes no state, transition or step, and
        # leaving it out keeps the hash of the journals written before it was declared.
        "gates": {g: {k: v for k, v in spec.items() if k != "opens_by"} for g, spec in GATES.items()},
        "prerequisites": MANAGEMENT_PREREQUISITE,
        "step_prerequisites": MANAGEMENT_STEP_PREREQUISITE,
    }
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()
