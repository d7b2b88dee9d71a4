"""The checks of a deployment against its systems before any change: bad input changes nothing."""

from __future__ import annotations

import random
from typing import Any

from adapters.base import Systems
from config.errors import AdapterError
from config.model import Deployment

__all__ = ["preflight"]


async def preflight(deployment: Deployment, systems: Systems, clock: Any = None) -> None:
    """Host environment, VLANs, inventory (and with them the systems' TLS trust): before any change.

    Only reads, so a transient error is retried a few times before the run gives up.

    Raises:
        ConfigError: every problem the systems show (exit 2).
        AdapterError: a system refused or stayed unreachable.
    """
    from orchestrator.clock import SystemClock

    clock = clock or SystemClock()
    retry = deployment.policy.retry
    rng = random.Random()
    attempts = retry.max_attempts
    for attempt in range(1, attempts + 1):
        try:
            await systems.vsphere.preflight(deployment)
            return
        except AdapterError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            await clock.sleep(retry.backoff(attempt, rng))
