"""The step registry (orchestrator.steps.STEPS) is checked against the lifecycle at import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from machines.lifecycle import STEPS as LIFECYCLE_STEPS
from orchestrator.steps import STEPS, Step, StepRegistryError, check_registry

ROOT = Path(__file__).resolve().parents[2]


def test_every_lifecycle_step_has_exactly_one_implementation() -> None:
    """The shipped registry holds the union of the lifecycle's steps over both roles, no more."""
    check_registry(STEPS, LIFECYCLE_STEPS)
    assert set(STEPS) == {s for role in LIFECYCLE_STEPS.values() for steps in role.values() for s in steps}


def test_a_lifecycle_step_without_implementation_is_named() -> None:
    """A step the lifecycle runs but nothing implements is refused, by name."""
    doctored = {name: step for name, step in STEPS.items() if name != "snmpv3"}
    with pytest.raises(StepRegistryError, match=r"without an implementation: \['snmpv3'\]"):
        check_registry(doctored, LIFECYCLE_STEPS)


def test_an_implementation_the_lifecycle_never_runs_is_named() -> None:
    """An implemented step that no milestone lists is refused, by name."""

    class Stray(Step):
        name = "stray_step"

    with pytest.raises(StepRegistryError, match=r"never runs: \['stray_step'\]"):
        check_registry({**STEPS, "stray_step": Stray()}, LIFECYCLE_STEPS)


def test_a_step_registered_under_another_name_is_named() -> None:
    """The registry key is the step's own name: a step filed under another one is refused."""
    doctored = {**STEPS, "snmpv3": STEPS["global_settings"]}
    with pytest.raises(StepRegistryError, match=r"another name than their own: \['snmpv3'\]"):
        check_registry(doctored, LIFECYCLE_STEPS)


def test_importing_the_steps_fails_when_the_lifecycle_has_an_unimplemented_step() -> None:
    """`import orchestrator.steps` itself raises, naming the step, so the program never starts with a hole."""
    code = (
        "import machines.lifecycle as l\n"
        "l.STEPS['management']['reserved'] = ('reserve_resources', 'unwritten_step')\n"
        "import orchestrator.steps\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "StepRegistryError" in done.stderr and "unwritten_step" in done.stderr


def test_steps_carry_no_roles_of_their_own() -> None:
    """Which role runs a step is said once, in machines.lifecycle.STEPS: no Step has a roles attribute."""
    assert not any(hasattr(step, "roles") for step in STEPS.values())
