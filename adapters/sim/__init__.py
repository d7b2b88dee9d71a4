"""The simulated world and the twin of every outside system.

Each twin has the same Protocol (:mod:`adapters.base`) and the same errors as the real
adapter it stands in for. The twins share one :class:`SimWorld`, whose SQLite file keeps
their state so that a killed simulation resumes::

    world = SimWorld.open("world.sqlite", latency=0.05, faults="transient=0.05,seed=1")
    directory = SimDirectory(world, deployment)
    systems = Systems(
        vsphere=SimVSphere(world, deployment),
        pexip=SimPexipApi(world, deployment, directory),
        console=SimConsole(world, deployment),
        ca=SimCA(world, deployment),
        directory=directory,
        provisioning=SimProvisioning(world, deployment),  # each Conferencing Node's tcp/8443
    )

A twin never imports another twin: what one needs of another system it reads from the
world's shared state, or is handed at construction (the Pexip twin gets the ``Directory``,
real or simulated, that decides its LDAP logins).
"""

from adapters.sim.ca import SimCA
from adapters.sim.console import SimConsole
from adapters.sim.ldap import SimDirectory
from adapters.sim.pexip import SimPexipApi
from adapters.sim.provisioning import SimProvisioning
from adapters.sim.vsphere import SimVSphere
from adapters.sim.world import EXIT_CODE, Effect, FaultPlan, FaultPoint, SimWorld

__all__ = [
    "SimWorld",
    "FaultPlan",
    "FaultPoint",
    "Effect",
    "EXIT_CODE",
    "SimVSphere",
    "SimPexipApi",
    "SimProvisioning",
    "SimConsole",
    "SimCA",
    "SimDirectory",
]
