"""``orchestrator validate``: the whole configuration checked in one pass, nothing created or changed.

It runs the checks that ``run`` runs before any change (structure, the guide's rules, the policy
floor, every referenced file, every secret readable) and returns every problem in one report.
``offline`` skips what needs this host's environment (secrets, the files the real systems open),
so that a configuration can be checked where no secret is set. Unless ``offline``, a configuration
that passed every other check is also checked for reachability: a TCP connection to every real
system's URL (vCenter, the management API, the directory), each refusal named by its field.
TLS trust of those systems is not checked here yet (``run``'s preflight does it).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from config.errors import ConfigError
from config.model import Deployment
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
    problems = [] if offline else unreachable(deployment)
    if not offline and not problems:
        problems = asyncio.run(systems_problems(deployment))
    return Validation(deployment.source or where, offline, problems, deployment.name, len(deployment.nodes))


CONNECT_TIMEOUT_S = 3.0


def _endpoints(d: Deployment) -> list[tuple[str, str, int]]:
    """(field, host, port) of every real system with an address."""
    out = []
    for name, spec, default in (("vcenter", d.vcenter, 443), ("pexip_api", d.pexip_api, 443)):
        if spec.mode == "real":
            parts = urlsplit(spec.url)
            out.append((f"{name}.url", parts.hostname or "", parts.port or default))
    if d.ldap.mode == "real":
        out.append(("ldap.server", d.ldap.server, d.ldap.port))
    return out


def unreachable(deployment: Deployment) -> list[tuple[str, str]]:
    """A problem for every real system this host cannot open a TCP connection to."""
    problems = []
    for name, host, port in _endpoints(deployment):
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            problems.append(
                (
                    name,
                    f"cannot connect to {host}:{port} (got {why}); check the address, DNS and firewall, "
                    "or pass --offline to check the rest",
                )
            )
    return problems


async def systems_problems(deployment: Deployment) -> list[tuple[str, str]]:
    """The preflight ``run`` makes, asked once, over an in-memory world where a system is simulated."""
    from config.errors import AdapterError
    from orchestrator._preflight import preflight
    from orchestrator.wiring import needs_world, open_systems

    world = None
    if needs_world(deployment):
        from adapters.sim.world import SimWorld

        world = SimWorld.open(":memory:")
    try:
        systems = open_systems(deployment, world)
        try:
            await preflight(deployment, systems, retry=False)
        finally:
            await systems.aclose()
    except ConfigError as exc:
        return list(exc.problems)
    except AdapterError as exc:  # unreachable after the TCP check: the section of the system the error names
        section = {"vsphere": "vcenter"}.get(exc.system, exc.system or "vcenter")
        return [(section, f"{exc}; check the address and that the server answers, or pass --offline")]
    finally:
        if world is not None:
            world.close()
    return []
