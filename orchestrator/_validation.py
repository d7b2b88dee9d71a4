"""``orchestrator validate``: the whole configuration checked in one pass, nothing created or changed.

It runs the checks that ``run`` runs before any change (structure, the guide's rules, the policy
floor, every referenced file, every secret readable) and returns every problem in one report.
``offline`` skips what needs this host's environment (secrets, the files the real systems open),
so that a configuration can be checked where no secret is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from config.errors import ConfigError
from orchestrator._session import SessionSettings
from orchestrator._settings import load_deployment

__all__ = ["Validation", "validate"]


@dataclass(frozen=True)
class Validation:
    """The outcome of ``validate``: ``problems`` as ``(field, message)``, empty when valid."""

    config: str
    offline: bool
    problems: list[tuple[str, str]] = field(default_factory=list)
    deployment: str | None = None
    nodes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "valid": self.ok,
            "offline": self.offline,
            "deployment": self.deployment,
            "nodes": self.nodes,
            "problems": [{"field": f, "message": m} for f, m in self.problems],
        }


def validate(settings: SessionSettings, *, offline: bool = False) -> Validation:
    """Check the configuration ``settings`` names; read-only (no journal, no world, no key is opened)."""
    where = str(settings.config) if settings.config else "(default configuration)"
    try:
        deployment = load_deployment(settings, check_secrets=not offline)
    except ConfigError as exc:
        return Validation(where, offline, list(exc.problems))
    assert deployment is not None  # required: a missing file raised
    return Validation(deployment.source or where, offline, [], deployment.name, len(deployment.nodes))
