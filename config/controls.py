"""The guide's controls as typed data, loaded from ``config/controls.toml`` beside the policy.

Each :class:`Control` is one requirement of the Secure Mode Deployment Guide and says how
``orchestrator audit`` proves it: the steps whose observe -> diff covers it and which of their
``Change`` fields belong to it. The file's header explains every key. A control names values of
the policy (``secure-mode-policy.toml``) by key, never restates them: the guide's values stay in
one place. ``tests/config/test_controls_map.py`` checks the map against the guide, the steps and
the policy.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CONTROLS_PATH", "Control", "Controls", "load_controls"]

CONTROLS_PATH = Path(__file__).with_name("controls.toml")


@dataclass(frozen=True)
class Control:
    """One control of the guide, and how the audit proves it."""

    id: str
    group: str
    title: str
    section: str  # the guide's section heading
    guide: str  # the guide's words, verbatim
    steps: tuple[str, ...]  # steps whose observation proves it
    fields: tuple[str, ...]  # patterns over the steps' Change.field: "*" matches anything
    roles: tuple[str, ...]
    policy: tuple[str, ...] = ()  # dotted keys of the typed policy
    not_applicable_if: str | None = None  # "path=value" over the deployment

    def matches(self, field: str) -> bool:
        """Whether a ``Change.field`` of one of its steps belongs to this control."""
        return any(_pattern(p).fullmatch(field) for p in self.fields)


@dataclass(frozen=True)
class Controls:
    """Every control, and the steps no control observes (with the reason)."""

    controls: tuple[Control, ...]
    procedural_steps: dict[str, str]

    def by_id(self, control_id: str) -> Control:
        """Raises: KeyError for an unknown id."""
        for c in self.controls:
            if c.id == control_id:
                return c
        raise KeyError(control_id)


@functools.cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in text.split("*")))


def _control(raw: dict[str, Any]) -> Control:
    fields: dict[str, Any] = dict(raw)
    fields.update({k: tuple(raw[k]) for k in ("steps", "fields", "roles", "policy") if k in raw})
    return Control(**fields)


@functools.cache
def load_controls(path: Path = CONTROLS_PATH) -> Controls:
    """The controls file, parsed (cached: it ships with the program).

    Raises:
        ValueError: a duplicate id, or a control without steps or fields (a broken file).
    """
    with path.open("rb") as f:
        raw = tomllib.load(f)
    controls = tuple(_control(c) for c in raw.get("control", []))
    ids = [c.id for c in controls]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    empty = [c.id for c in controls if not c.steps or not c.fields or not c.roles]
    if dupes or empty:
        raise ValueError(f"{path}: duplicate control ids {dupes}; controls without steps, fields or roles {empty}")
    return Controls(controls, dict(raw.get("procedural_steps", {})))
