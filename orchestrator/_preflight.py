"""The checks of a deployment against its systems before any change: bad input changes nothing.

``run`` and ``resume`` run them before the journal is opened for writing (see ``_session``), so a
vCenter whose certificate is not trusted, a port group it lacks, a directory that refuses the
service account or lacks a mapped group stop the command with exit 2 and nothing written. The
Management API is not asked here: before ``installed`` there is no Manager to ask.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.base import Systems
from config.errors import AdapterError, ConfigError, Rejected
from config.model import Deployment

__all__ = ["preflight"]


async def preflight(deployment: Deployment, systems: Systems, clock: Any = None, *, retry: bool = True) -> None:
    """vCenter (host environment, VLANs, inventory, its TLS trust), then a real directory: before any change.

    Only reads, so a transient error is retried a few times before the run gives up (``retry``
    false: asked once, as ``validate`` does).

    Raises:
        ConfigError: every problem the systems show, a refusal included (exit 2), named by its field.
        AdapterError: a system stayed unreachable.
    """
    attempts = deployment.policy.retry.max_attempts if retry else 1
    try:
        await _retried(deployment, clock, attempts, lambda: systems.vsphere.preflight(deployment))
    except Rejected as exc:  # an untrusted certificate, a refused login: what the configuration says is wrong
        raise ConfigError([("vcenter", str(exc))]) from exc
    if deployment.ldap.mode == "real":
        await _retried(deployment, clock, attempts, lambda: _directory(deployment, systems))


async def _retried(deployment: Deployment, clock: Any, attempts: int, check: Callable[[], Awaitable[None]]) -> None:
    from orchestrator.clock import SystemClock

    clock = clock or SystemClock()
    retry = deployment.policy.retry
    rng = random.Random()
    for attempt in range(1, attempts + 1):
        try:
            await check()
            return
        except AdapterError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            await clock.sleep(retry.backoff(attempt, rng))


async def _directory(deployment: Deployment, systems: Systems) -> None:
    """The service account binds over TLS, the search DNs exist, and every mapped group is in the directory.

    What the ``ldap_authenticated`` steps will need, known before the first VM is touched.
    """
    try:
        await systems.directory.verify_bind()
    except Rejected as exc:
        raise ConfigError([("ldap", str(exc))]) from exc
    problems = []
    for i, mapping in enumerate(deployment.ldap.role_mappings):
        if not await systems.directory.group_exists(mapping.group_dn):
            problems.append(
                (
                    f"ldap.role_mappings[{i}].group_dn",
                    f"no such group in the directory (got {mapping.group_dn!r}); create the group or correct the DN",
                )
            )
    if problems:
        raise ConfigError(problems)
