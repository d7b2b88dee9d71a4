"""Adapters: one module per outside system, each with a simulated twin.

The contract is :mod:`adapters.base` (one ``typing.Protocol`` per system). The simulated
twins share a :class:`SimWorld`, whose SQLite file keeps their state so that a killed
simulation resumes::

    world = SimWorld.open("world.sqlite", latency=0.05, faults="transient=0.05,seed=1")
    systems = Systems(
        vsphere=SimVSphere(world, deployment),
        pexip=SimPexipApi(world, deployment),
        console=SimConsole(world, deployment),
        ca=SimCA(world, deployment),
        directory=SimDirectory(world, deployment),
    )
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
from adapters.ca_sim import SimCA
from adapters.console_sim import SimConsole
from adapters.ldap_sim import SimDirectory
from adapters.pexip_sim import SimPexipApi
from adapters.sim_world import EXIT_CODE, Effect, FaultPlan, FaultPoint, SimWorld
from adapters.vsphere_sim import SimVSphere

__all__ = [
    # the contract (adapters.base)
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
    # the simulated world and its twins
    "SimWorld",
    "FaultPlan",
    "FaultPoint",
    "Effect",
    "EXIT_CODE",
    "SimVSphere",
    "SimPexipApi",
    "SimConsole",
    "SimCA",
    "SimDirectory",
]
