"""What the contract suites are handed: one implementation of a protocol, ready to use.

Each ``*Case`` bundles the adapter under test with the deployment that describes the world
it talks to, and the few things only the world can do (a CA operator returning a
certificate). The fixtures in ``conftest.py`` build one case per implementation; the tests
use nothing but the protocol's methods, so every implementation is held to the same tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.base import CertificateAuthority, Console, Directory, NodeProvisioning, PexipApi, Systems, VSphere
from config.model import Deployment

__all__ = [
    "VSphereCase",
    "PexipCase",
    "ConsoleCase",
    "CaCase",
    "DirectoryCase",
    "ProvisioningCase",
    "known_difference",
]


@dataclass
class VSphereCase:
    """A VSphere implementation over a world with nothing of ours in it yet."""

    kind: str  # "sim" | "vcsim"
    vsphere: VSphere
    deployment: Deployment


@dataclass
class PexipCase:
    """A PexipApi implementation talking to a freshly installed Management Node."""

    kind: str  # "sim" | "slapd"
    api: PexipApi
    deployment: Deployment


@dataclass
class ConsoleCase:
    """A Console implementation; the Management Node's VM runs with its BIOS locked, no wizard done."""

    kind: str  # "sim" | "ssh"
    console: Console
    deployment: Deployment
    admin_password: str  # the one the API will log in with
    installation_answers: dict[str, Any]
    security_answers: dict[str, Any]
    api: PexipApi  # the twin's API over the same world: whose web login the installation wizard set


@dataclass
class CaCase:
    """A CertificateAuthority implementation with nothing submitted yet.

    ``signs(node)`` is the CA doing its work for ``node``'s submitted CSR (the operator of a
    manual CA; nothing for the twin, which signs on its own)."""

    kind: str  # "sim" | "manual"
    ca: CertificateAuthority
    deployment: Deployment
    signs: Callable[[str], Awaitable[None]]


@dataclass
class DirectoryCase:
    """A Directory implementation over the directory the deployment declares.

    ``build(deployment)`` makes the same implementation for a changed deployment (a wrong
    bind password, say)."""

    kind: str  # "sim" | "slapd"
    directory: Directory
    deployment: Deployment
    build: Callable[[Deployment], Directory]


@dataclass
class ProvisioningCase:
    """A NodeProvisioning implementation; the Management Node is installed, no Conferencing Node VM runs.

    ``systems`` are the twins of the same world (the Manager issues the bootstrap files and
    reports the sync); ``boot(node)`` imports, reserves, BIOS-locks and powers on the node's VM
    and returns once its provisioning interface answers."""

    kind: str  # "sim" | "https"
    provisioning: NodeProvisioning
    deployment: Deployment
    systems: Systems
    boot: Callable[[str], Awaitable[None]]


def known_difference(request: pytest.FixtureRequest, kind: str, kinds: set[str], reason: str) -> None:
    """Mark this run ``xfail(strict=True)`` when the implementation is one of ``kinds``: a real
    difference between implementations, listed, never hidden (it must keep failing)."""
    if kind in kinds:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
