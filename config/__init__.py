"""Plain data shared by every layer: the deployment, the policy, secrets and errors.

The data types are in :mod:`config.model`, :mod:`config.secrets` and :mod:`config.errors`;
reading and checking them from files is :mod:`config.load`, re-exported here.
"""

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
