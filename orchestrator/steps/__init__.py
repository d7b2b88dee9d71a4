"""The guide's procedures as idempotent steps (observe -> diff -> apply -> verify).

``STEPS`` maps each step name of ``machines.lifecycle.STEPS`` to its implementation.
The two are checked against each other at import: a lifecycle step without an
implementation (or an implementation the lifecycle never runs) is a programming error,
found when the program starts, not when a node reaches that step.
"""

from collections.abc import Mapping

from machines import lifecycle
from orchestrator.steps.auth_steps import (
    AdministratorRoles,
    ClientCertificateAuth,
    DisableLocalAuth,
    LdapConnection,
    LdapRoleMapping,
)
from orchestrator.steps.base import Change, Outcome, Step, StepContext, execute, plan_step
from orchestrator.steps.node_steps import (
    AuthenticationSync,
    ConfigSync,
    DeploymentFile,
    InstallationWizard,
    ProvisionNode,
    RegisterNode,
    SecurityWizard,
    VerifyAdminLogin,
)
from orchestrator.steps.pki_steps import CreateCsr, InstallCertificate, SipTlsFqdn, SipTlsVerification, TrustedCaChain
from orchestrator.steps.platform_steps import GlobalSettings, LocationQos, NetworkServices, Snmpv3
from orchestrator.steps.vsphere_steps import DeployOva, LockBios, ReserveResources

__all__ = [
    "STEPS",
    "Change",
    "Outcome",
    "Step",
    "StepContext",
    "StepRegistryError",
    "check_registry",
    "execute",
    "plan_step",
]


class StepRegistryError(RuntimeError):
    """The implemented steps are not the lifecycle's steps (a programming error)."""


def check_registry(implemented: Mapping[str, Step], declared: Mapping[str, Mapping[str, tuple[str, ...]]]) -> None:
    """Require one implementation per step of ``declared`` (``machines.lifecycle.STEPS``), and no other.

    Raises:
        StepRegistryError: naming the steps without an implementation and the extra ones.
    """
    wanted = {step for milestones in declared.values() for steps in milestones.values() for step in steps}
    missing, extra = sorted(wanted - set(implemented)), sorted(set(implemented) - wanted)
    misnamed = sorted(name for name, step in implemented.items() if step.name != name)
    problems = [
        *([f"lifecycle steps without an implementation: {missing}"] if missing else []),
        *([f"implemented steps the lifecycle never runs: {extra}"] if extra else []),
        *([f"registered under another name than their own: {misnamed}"] if misnamed else []),
    ]
    if problems:
        raise StepRegistryError(
            "orchestrator.steps.STEPS does not match machines.lifecycle.STEPS: "
            + "; ".join(problems)
            + "; add the Step class to orchestrator/steps/__init__.py or the step to machines/lifecycle.py"
        )


STEPS: dict[str, Step] = {
    cls.name: cls()
    for cls in (
        DeployOva,
        ReserveResources,
        LockBios,
        InstallationWizard,
        VerifyAdminLogin,
        SecurityWizard,
        GlobalSettings,
        NetworkServices,
        Snmpv3,
        LocationQos,
        TrustedCaChain,
        CreateCsr,
        InstallCertificate,
        SipTlsVerification,
        SipTlsFqdn,
        DeploymentFile,
        ProvisionNode,
        RegisterNode,
        ConfigSync,
        AdministratorRoles,
        LdapConnection,
        LdapRoleMapping,
        ClientCertificateAuth,
        DisableLocalAuth,
        AuthenticationSync,
    )
}

check_registry(STEPS, lifecycle.STEPS)
