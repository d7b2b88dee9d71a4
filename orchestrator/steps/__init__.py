"""The guide's procedures as idempotent steps (observe -> diff -> apply -> verify).

``STEPS`` maps each step name of ``machines.lifecycle.STEPS`` to its implementation.
"""

from orchestrator.steps.auth_steps import AdministratorRoles, ClientCertificateAuth, DisableLocalAuth, LdapConnection, LdapRoleMapping
from orchestrator.steps.base import Change, Outcome, Step, StepContext, execute, plan_step
from orchestrator.steps.node_steps import (
    AuthenticationSync,
    ConfigSync,
    DeploymentFile,
    InstallationWizard,
    RegisterNode,
    SecurityWizard,
    VerifyAdminLogin,
)
from orchestrator.steps.pki_steps import CreateCsr, InstallCertificate, SipTlsFqdn, SipTlsVerification, TrustedCaChain
from orchestrator.steps.platform_steps import GlobalSettings, LocationQos, NetworkServices, Snmpv3
from orchestrator.steps.vsphere_steps import DeployOva, LockBios, ReserveResources

__all__ = ["STEPS", "Change", "Outcome", "Step", "StepContext", "execute", "plan_step"]

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
