"""The control-to-step map (config/controls.toml) agrees with the guide, the steps and the policy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.controls import Control, load_controls
from config.load import load_policy
from machines.lifecycle import STEPS as LIFECYCLE
from orchestrator.steps import STEPS

GUIDE = (Path(__file__).resolve().parents[1] / "data" / "secure-mode-guide.txt").read_text()
CONTROLS = load_controls()
# The issue's groups of controls (#10, item 4): each must have at least one control.
REQUIRED_GROUPS = (
    "VM reservations",
    "BIOS",
    "Wizards",
    "Global settings",
    "Network services",
    "SNMP",
    "Locations",
    "Certificates",
    "Roles",
    "LDAP",
    "Authentication",
)


def plain(text: str) -> str:
    """The guide's words without markup: links keep their text, emphasis marks go, whitespace collapses."""
    text = re.sub(r"\[([^\]]*)\]\(#\)", r"\1", text)
    text = re.sub(r"\*+|</?i>|\\", "", text)
    return " ".join(text.split())


def test_every_step_with_an_observable_setting_is_covered_by_a_control() -> None:
    """Every step is named by a control, or listed as procedural with a reason (never both)."""
    named = {s for c in CONTROLS.controls for s in c.steps}
    procedural = set(CONTROLS.procedural_steps)
    assert set(STEPS) - named - procedural == set()
    assert named & procedural == set()
    assert all(reason.strip() for reason in CONTROLS.procedural_steps.values())


@pytest.mark.parametrize("control", CONTROLS.controls, ids=lambda c: c.id)
def test_control_names_real_steps_guide_text_and_policy_keys(control: Control) -> None:
    """Its steps exist and run for each of its roles, its words and section are the guide's, its policy keys resolve."""
    assert set(control.steps) <= set(STEPS)
    for role in control.roles:
        runs = {s for steps in LIFECYCLE[role].values() for s in steps}
        assert runs & set(control.steps), f"{control.id}: no step of {control.steps} runs for a {role} node"
    assert plain(control.guide) in plain(GUIDE), control.guide
    assert control.section in GUIDE.splitlines(), control.section
    policy = load_policy()
    for key in control.policy:
        value: object = policy
        for part in key.split("."):
            value = getattr(value, part)  # AttributeError: a policy key that does not exist
    assert re.fullmatch(r"SM-[A-Z]+-[A-Z0-9-]+", control.id)


def test_every_group_of_the_issue_has_a_control() -> None:
    """Each group the issue names (VM reservations ... authentication) has at least one control."""
    assert set(REQUIRED_GROUPS) <= {c.group for c in CONTROLS.controls}


@pytest.mark.parametrize(
    ("control_id", "field", "belongs"),
    [
        ("SM-VM-RES-3", "disk[Hard disk 1].iops_limit", True),  # brackets are literal, * matches the label
        ("SM-VM-RES-3", "disk_iops_limit", False),
        ("SM-NET-2", "ntp_server[10.0.0.1].key_id", True),
        ("SM-NET-2", "ntp_server[10.0.0.1]", True),
        ("SM-NET-1", "ntp_server[10.0.0.1]", False),
        ("SM-LOC-2", "system_location[east].mtu", True),
        ("SM-LOC-1", "system_location[east].mtu", False),
        ("SM-GLB-1", "global.enable_chat_x", False),  # whole-field match, not a prefix
    ],
)
def test_field_patterns_match_whole_change_fields(control_id: str, field: str, belongs: bool) -> None:
    """A control's field patterns match whole Change.field names; only * is a wildcard."""
    assert CONTROLS.by_id(control_id).matches(field) is belongs
