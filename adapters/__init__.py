"""Adapters: one module or package per outside system, each with a simulated twin.

The contract is :mod:`adapters.base` (one ``typing.Protocol`` per system), re-exported
here. The real adapters are :mod:`adapters.vsphere` (vCenter/ESXi), :mod:`adapters.ldap`
(an LDAP directory), :mod:`adapters.provisioning` (the Conferencing Nodes' tcp/8443) and
:mod:`adapters.ca_manual` (a CA run by people); the simulated world and the twins are
:mod:`adapters.sim`. Importing this package imports neither pyVmomi, ldap3 nor the simulated
world.
"""

from adapters.base import (
    BiosState,
    CertificateAuthority,
    Console,
    Created,
    Directory,
    DiskAllocation,
    PexipApi,
    Reservation,
    Systems,
    VmState,
    VSphere,
    WizardState,
)

__all__ = [
    "VSphere",
    "PexipApi",
    "Console",
    "CertificateAuthority",
    "Directory",
    "Systems",
    "VmState",
    "DiskAllocation",
    "Reservation",
    "BiosState",
    "Created",
    "WizardState",
]
