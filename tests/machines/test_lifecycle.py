"""The lifecycle machine: every legal and illegal transition, the guards, the gates, the planner."""

from __future__ import annotations

import itertools

import pytest

from config.errors import TransitionError
from machines.lifecycle import (
    APPROVAL_GATES,
    FAILED,
    GATES,
    MILESTONES,
    NEW,
    STATES,
    STEPS,
    TARGET_OF,
    TRANSIENT,
    TRANSIENT_OF,
    TRANSITIONS,
    WAITING,
    definition_hash,
    management_lacks,
    milestone_index,
)
from machines.node import Fleet, NodeModel
from machines.plan import Blocked, Done, Held, RunStep, Start, Stopped, Wait, next_action, remaining_steps
from orchestrator._fsm import build_machine, fire

MANAGER_FIRST_STEP_EVENTS = {"finished": None}


def _pair(mgmt_state: str = NEW, conf_state: str = NEW) -> tuple[object, NodeModel, NodeModel]:
    machine = build_machine()
    fleet = Fleet()
    mgmt = NodeModel("mgr", "management", fleet, state=mgmt_state)
    conf = NodeModel("conf", "conferencing", fleet, state=conf_state)
    fleet.management = mgmt
    machine.add_model(mgmt, initial=mgmt_state)
    machine.add_model(conf, initial=conf_state)
    return machine, mgmt, conf


def _kwargs(model: NodeModel, trigger: str, source: str, dest: str) -> dict[str, object]:
    """The arguments the engine passes with each trigger."""
    if trigger == "complete":
        return {"finished": STEPS[model.role][TARGET_OF[source]][-1]}
    if trigger == "wait":
        return {"gate": next(g for g, s in GATES.items() if s["state"] == dest)}
    if trigger == "fail":
        return {"reason": "test"}
    if trigger == "rewind":
        return {"step": STEPS[model.role][TARGET_OF[dest]][0]}
    return {}


# Every (trigger, source, dest) the definition allows, for the management role.
LEGAL = [
    (t["trigger"], source, t["dest"])
    for t in TRANSITIONS
    for source in (t["source"] if isinstance(t["source"], list) else [t["source"]])
]


@pytest.mark.parametrize("trigger,source,dest", [x for x in LEGAL if x[0] not in ("retry", "rewind")])
async def test_every_legal_transition_moves_to_its_destination(trigger: str, source: str, dest: str) -> None:
    """Each transition of the definition fires from its source and lands on its destination."""
    machine, mgmt, _ = _pair(mgmt_state=source)
    await fire(machine, mgmt, trigger, **_kwargs(mgmt, trigger, source, dest))
    assert mgmt.state == dest


@pytest.mark.parametrize("dest", [*TRANSIENT, *WAITING])
async def test_retry_returns_exactly_where_the_node_failed(dest: str) -> None:
    """A failed node's retry goes back to the state it failed from, and nowhere else."""
    machine, mgmt, _ = _pair(mgmt_state=dest)
    await fire(machine, mgmt, "fail", reason="boom")
    assert (mgmt.state, mgmt.failed_from, mgmt.reason) == (FAILED, dest, "boom")
    await fire(machine, mgmt, "retry")
    assert mgmt.state == dest


ALL_TRIGGERS = sorted({t["trigger"] for t in TRANSITIONS})
ILLEGAL = [
    (trigger, state)
    for trigger, state in itertools.product(ALL_TRIGGERS, STATES)
    if not any(t == trigger and s == state for t, s, _ in LEGAL)
]


@pytest.mark.parametrize("trigger,state", ILLEGAL)
async def test_every_illegal_transition_is_refused(trigger: str, state: str) -> None:
    """An event with no transition from the current state raises and leaves the state alone."""
    machine, mgmt, _ = _pair(mgmt_state=state)
    with pytest.raises(TransitionError):
        await fire(machine, mgmt, trigger, reason="x", gate="certificate", finished="x", step="deploy_ova")
    assert mgmt.state == state


@pytest.mark.parametrize(
    "mgmt_state,allowed",
    [
        (NEW, False),  # nothing done on the Manager yet
        ("installed", False),  # installed but not hardened
        ("hardening", False),  # the security wizard is under way
        ("hardened", True),  # bootstrap complete: the guide allows Conferencing Nodes now
        ("certified", True),  # later milestones too
        ("ldap_authenticated", True),
        (FAILED, False),  # a failed Manager that never reached hardened
    ],
)
async def test_conferencing_node_waits_for_a_hardened_management_node(mgmt_state: str, allowed: bool) -> None:
    """No Conferencing Node enters deployment before the Management Node is hardened."""
    machine, _mgmt, conf = _pair(mgmt_state=mgmt_state)
    if allowed:
        await fire(machine, conf, "start")
        assert conf.state == "deploying"
    else:
        with pytest.raises(TransitionError, match="guard"):
            await fire(machine, conf, "start")
        assert conf.state == NEW


async def test_conferencing_lockdown_waits_for_the_management_lockdown() -> None:
    """A Conferencing Node's ldap_authenticated milestone starts only after the Manager's."""
    machine, mgmt, conf = _pair(mgmt_state="certified", conf_state="certified")
    with pytest.raises(TransitionError):
        await fire(machine, conf, "start")
    mgmt.state = "ldap_authenticated"
    await fire(machine, conf, "start")
    assert conf.state == "ldap_authenticating"


async def test_maintenance_stops_new_milestones() -> None:
    """A node in maintenance starts nothing, and keeps its place."""
    machine, mgmt, _ = _pair(mgmt_state="reserved")
    mgmt.maintenance = True
    with pytest.raises(TransitionError):
        await fire(machine, mgmt, "start")
    assert mgmt.state == "reserved"


async def test_complete_requires_the_milestones_last_step() -> None:
    """A milestone completes only when its last step has committed."""
    machine, mgmt, _ = _pair(mgmt_state="hardening")
    with pytest.raises(TransitionError):
        await fire(machine, mgmt, "complete", finished="security_wizard")
    await fire(machine, mgmt, "complete", finished="location_qos")
    assert mgmt.state == "hardened"


@pytest.mark.parametrize("gate,spec", list(GATES.items()))
async def test_gate_wait_and_open_go_through_the_waiting_state(gate: str, spec: dict[str, str]) -> None:
    """Each gate has a visible waiting state, entered from its step's state and left back to it."""
    machine, mgmt, _ = _pair(mgmt_state=spec["transient"])
    await fire(machine, mgmt, "wait", gate=gate)
    assert mgmt.state == spec["state"]
    await fire(machine, mgmt, "open_gate")
    assert mgmt.state == spec["transient"]


async def test_wait_refuses_a_gate_of_another_step() -> None:
    """The certificate gate cannot be waited on while reserving resources."""
    machine, mgmt, _ = _pair(mgmt_state="reserving")
    with pytest.raises(TransitionError):
        await fire(machine, mgmt, "wait", gate="certificate")


@pytest.mark.parametrize(
    "state,step,target,ok",
    [
        ("hardened", "reserve_resources", "reserving", True),  # back to an earlier milestone
        ("certifying", "create_csr", "certifying", True),  # the current milestone (engine handles same-state)
        ("reserved", "create_csr", "certifying", False),  # never forward past where the node is
        (FAILED, "deploy_ova", "deploying", False),  # failed node with no failed_from: unknown place
    ],
)
async def test_rewind_only_goes_back(state: str, step: str, target: str, ok: bool) -> None:
    """`resume --from-step` can only go back to a step at or before the node's place."""
    machine, mgmt, _ = _pair(mgmt_state=state)
    if ok and state != target:
        await fire(machine, mgmt, "rewind", step=step)
        assert mgmt.state == target
    elif not ok:
        with pytest.raises(TransitionError):
            await fire(machine, mgmt, "rewind", step=step)


def test_every_state_is_reachable_and_every_transient_names_a_stable_target() -> None:
    """From new, every state can be reached; every transient state targets a milestone."""
    reachable = {NEW}
    frontier = [NEW]
    while frontier:
        s = frontier.pop()
        for t in TRANSITIONS:
            sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
            if s in sources and t["dest"] not in reachable:
                reachable.add(t["dest"])
                frontier.append(t["dest"])
    assert reachable == set(STATES)
    assert all(TARGET_OF[t] in MILESTONES for t in TRANSIENT)


def test_both_roles_have_steps_for_every_milestone() -> None:
    """Management and Conferencing Nodes each have at least one step per milestone, and they differ."""
    for role in ("management", "conferencing"):
        assert set(STEPS[role]) == set(MILESTONES)
        assert all(STEPS[role][m] for m in MILESTONES)
    assert STEPS["management"] != STEPS["conferencing"]
    assert "security_wizard" in STEPS["management"]["hardened"]
    assert "security_wizard" not in STEPS["conferencing"]["hardened"]


def test_definition_hash_is_stable_and_sensitive() -> None:
    """The hash is the same twice and changes when a step list changes."""
    first = definition_hash()
    assert first == definition_hash()
    STEPS["management"]["reserved"] = ("reserve_resources", "extra")
    try:
        assert definition_hash() != first
    finally:
        STEPS["management"]["reserved"] = ("reserve_resources",)
    assert definition_hash() == first


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        (dict(role="management", state=NEW, step=None, management_state=NEW), Start),  # a new Manager starts
        (dict(role="conferencing", state=NEW, step=None, management_state="installed"), Blocked),  # guard
        (dict(role="conferencing", state=NEW, step=None, management_state="hardened"), Start),
        (dict(role="management", state="reserving", step=None, management_state=None), RunStep),
        (dict(role="management", state="awaiting_approval", step="security_wizard", management_state=None), Wait),
        (dict(role="management", state=FAILED, step="lock_bios", management_state=None, last_error="x"), Stopped),
        (dict(role="management", state="reserved", step=None, management_state=None, maintenance=True), Held),
        (dict(role="management", state="ldap_authenticated", step=None, management_state=None), Done),
        (
            dict(role="management", state="reserved", step=None, management_state=None, until="reserved"),
            Done,
        ),  # --until
    ],
)
def test_next_action(kwargs: dict[str, object], expected: type) -> None:
    """The planner's decision for each kind of place a node can be in."""
    assert isinstance(next_action(**kwargs), expected)  # type: ignore[arg-type]


def test_run_step_resumes_the_journaled_step_not_the_first() -> None:
    """A node killed mid-milestone resumes at the step that was started, and knows if it is the last."""
    action = next_action(role="management", state="hardening", step="snmpv3", management_state=None)
    assert isinstance(action, RunStep) and action.step == "snmpv3" and not action.last
    action = next_action(role="management", state="hardening", step="location_qos", management_state=None)
    assert isinstance(action, RunStep) and action.last


def test_remaining_steps_from_the_middle() -> None:
    """The dry-run plan starts at the step in progress and ends at --until."""
    rest = remaining_steps("management", "hardening", "snmpv3", until="certified")
    assert rest[0] == ("hardened", "snmpv3")
    assert rest[-1] == ("certified", "sip_tls_verification")
    assert milestone_index("hardening") == MILESTONES.index("installed") + 1
    assert TRANSIENT_OF["hardened"] == "hardening"


def test_definition_hash_is_the_same_in_every_process() -> None:
    """The hash does not depend on hash randomisation (a resumed process must agree with the first)."""
    import os
    import subprocess
    import sys

    hashes = {
        subprocess.run(
            [sys.executable, "-c", "from machines.lifecycle import definition_hash; print(definition_hash())"],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3)
    }
    assert hashes == {definition_hash() + "\n"}


# The hash of the current definition. It changed when the Conferencing Node's provision_node step
# was added (7f4e2345cb35...), and again when a Conferencing Node's certified milestone began to wait for
# a step of the Manager's (fe87a4b079c2...): journals written before resume only with --allow-version-change.
DEFINITION_HASH = "9c13900bb372ee59492b5a7b6325bb2b8dd4478eb12dc49623d41d82ddd4abf1"


def test_every_gate_says_who_opens_it() -> None:
    """Each gate is opened by an operator or by the CA; the approval gates are the operator's."""
    assert {spec["opens_by"] for spec in GATES.values()} <= {"operator", "ca"}
    assert APPROVAL_GATES == {g for g, spec in GATES.items() if spec["opens_by"] == "operator"}
    assert GATES["certificate"]["opens_by"] == "ca"


def test_who_opens_a_gate_leaves_the_definition_hash_alone() -> None:
    """opens_by is not hashed: who opens a gate changes no journal's definition hash."""
    assert definition_hash() == DEFINITION_HASH
    GATES["certificate"]["opens_by"] = "operator"
    try:
        assert definition_hash() == DEFINITION_HASH
    finally:
        GATES["certificate"]["opens_by"] = "ca"


@pytest.mark.parametrize(
    ("milestone", "state", "step", "lacks"),
    [
        ("deployed", None, None, "hardened"),
        ("deployed", "hardening", "global_settings", "hardened"),
        ("deployed", "hardened", None, None),
        ("reserved", NEW, None, None),  # no guard
        ("certified", "hardened", None, "trusted_ca_chain"),  # the Manager's certified milestone not begun
        ("certified", "certifying", "trusted_ca_chain", "trusted_ca_chain"),  # in progress, not committed
        ("certified", "certifying", "create_csr", None),  # trusted_ca_chain committed
        ("certified", "awaiting_certificate", "install_certificate", None),  # the Manager waits for its own
        ("certified", "certified", None, None),
        ("certified", FAILED, "create_csr", "trusted_ca_chain"),  # a failed Manager blocks (plan's view)
        ("ldap_authenticated", "certified", None, "ldap_authenticated"),
    ],
)
def test_what_a_conferencing_node_waits_for_on_the_manager(
    milestone: str, state: str | None, step: str | None, lacks: str | None
) -> None:
    """The cross-node guards: a Manager's milestone, or one step of it (trusted_ca_chain before certified)."""
    assert management_lacks(milestone, state, step) == lacks
