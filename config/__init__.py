"""Plain data shared by every layer: the deployment, the policy, secrets and errors.

The data types are in :mod:`config.model`, :mod:`config.secrets` and :mod:`config.errors`;
reading and checking them from files is :mod:`config.load`, re-exported here. The re-exports
are resolved on first use (PEP 562), so ``import config.errors`` does not load the loader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.load import (
        POLICY_PATH,
        load_deployment,
        load_policy,
        simulated_deployment,
        unavailable_secrets,
        validate,
    )

__all__ = [
    "POLICY_PATH",
    "load_deployment",
    "load_policy",
    "simulated_deployment",
    "unavailable_secrets",
    "validate",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from config import load

        return getattr(load, name)
    raise AttributeError(f"module 'config' has no attribute {name!r}")
