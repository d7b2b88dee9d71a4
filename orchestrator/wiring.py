"""The one place where the configuration picks the adapters: real or simulated, per system.

``mode = "real" | "sim"`` per system in the deployment file; mixing is legal (the lab
runs a real vCenter simulator with simulated Pexip nodes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from adapters.base import CertificateAuthority, Console, Directory, NodeProvisioning, PexipApi, Systems, VSphere
from adapters.bootstrap_store import BootstrapStore, bootstrap_dir
from config._signing import any_real_system
from config.model import Deployment

if TYPE_CHECKING:  # the world is opened by the session; importing it here would slow every start
    from adapters.sim.world import SimWorld
    from adapters.syslog import SyslogSender  # imported where a sender is made: status starts without asyncio

__all__ = ["open_systems", "open_syslog", "needs_world", "any_real"]


def needs_world(deployment: Deployment) -> bool:
    """Whether a run opens the simulated world: a system is simulated, or the world is shared with simulators
    that stand behind real clients (the lab's: the VMs a real vCenter holds must be mirrored there for them)."""
    if deployment.simulation.shared:
        return True
    return "sim" in (
        deployment.vcenter.mode,
        deployment.pexip_api.mode,
        deployment.console.mode,
        deployment.ldap.mode,
        deployment.pki.mode,
    )


def any_real(deployment: Deployment) -> bool:
    """Whether any system is in real mode: the journal's signing key must then be configured and private."""
    return any_real_system(deployment)


def open_syslog(deployment: Deployment) -> SyslogSender:
    """Where the journal's checkpoints are witnessed: ``journal.syslog`` (``auto``: real unless a system is simulated).

    TLS servers are verified against their own ``ca_file`` when the configuration gives one, else
    against ``pki.ca_chain`` (the deployment's CA), else the system's CAs.
    """
    servers = deployment.network.syslog_servers
    mode = deployment.journal.syslog
    if mode == "sim" or (mode == "auto" and needs_world(deployment)):
        from adapters.sim.syslog import SimSyslog

        return SimSyslog(servers)
    from adapters.syslog import RemoteSyslog

    base = Path(deployment.source).parent if deployment.source else Path.cwd()
    ca = getattr(servers[0], "ca_file", None) if servers else None  # a per-server CA, when the model has one
    ca = ca or deployment.pki.ca_chain
    return RemoteSyslog(servers, ca_file=(base / ca) if ca else None)


def open_systems(deployment: Deployment, world: SimWorld | None, *, journal: Path | None = None) -> Systems:
    """Build the adapters of one run. ``world`` is the open ``SimWorld`` when any system is simulated.

    ``journal``: the journal's file, beside which the Conferencing Nodes' encrypted bootstrap
    files are kept (default: the configuration's ``journal.path``).
    """
    provisioning: NodeProvisioning | None = None
    if deployment.pexip_api.mode == "real":  # the nodes the real Manager provisions answer on tcp/8443
        from adapters.provisioning import HttpsProvisioning

        # First: a node whose certificate cannot be verified is a ConfigError before any adapter opens.
        provisioning = HttpsProvisioning(deployment)
    from adapters.ca_manual import ManualCA

    if needs_world(deployment) and world is None:
        raise RuntimeError("a simulated system needs the simulated world open")
    vsphere: VSphere
    if deployment.vcenter.mode == "real":
        from adapters.vsphere import VCenter

        vsphere = VCenter.from_deployment(deployment)
        if world is not None:
            # Real VMs, simulated nodes (the lab): the twins must see what the VMs do.
            from adapters.sim.bridge import MirroredVSphere

            vsphere = MirroredVSphere(vsphere, world)
    else:
        from adapters.sim.vsphere import SimVSphere

        assert world is not None  # needs_world: checked above
        vsphere = SimVSphere(world, deployment)
    base = Path(deployment.source).parent if deployment.source else None
    ca: CertificateAuthority = ManualCA(deployment, base)
    if deployment.pki.mode == "sim":
        from adapters.sim.ca import SimCA

        ca = SimCA(_world(world), deployment)
    elif deployment.pki.mode == "command":
        from adapters.ca_command import CommandCA

        ca = CommandCA(deployment, base)
    directory: Directory
    if deployment.ldap.mode == "real":
        from adapters.ldap import LdapDirectory

        directory = LdapDirectory.from_deployment(deployment)
    else:
        from adapters.sim.ldap import SimDirectory

        directory = SimDirectory(_world(world), deployment)
    if provisioning is None:
        from adapters.sim.provisioning import SimProvisioning

        provisioning = SimProvisioning(_world(world), deployment)
    pexip: PexipApi
    if deployment.pexip_api.mode == "real":
        from adapters.pexip import HttpPexipApi

        pexip = HttpPexipApi(deployment.pexip_api, ldap=deployment.ldap, address=deployment.management.address)
    else:
        from adapters.sim.pexip import SimPexipApi

        pexip = SimPexipApi(_world(world), deployment, directory)  # its LDAP logins ask this directory
    console: Console
    if deployment.console.mode == "real":
        from adapters.console import SshConsole

        console = SshConsole(deployment)
    else:
        from adapters.sim.console import SimConsole

        console = SimConsole(_world(world), deployment)
    return Systems(
        vsphere=vsphere,
        pexip=pexip,
        console=console,
        ca=ca,
        directory=directory,
        provisioning=provisioning,
        bootstrap=BootstrapStore(
            bootstrap_dir(_journal(deployment, journal)), deployment.pexip_api.bootstrap_key, deployment.name
        ),
    )


def _world(world: SimWorld | None) -> SimWorld:
    """The open world a simulated adapter needs (``needs_world`` made the session open it)."""
    if world is None:
        raise RuntimeError("a simulated system needs the simulated world open")
    return world


def _journal(deployment: Deployment, journal: Path | None) -> Path:
    if journal is not None:
        return Path(journal)
    return Path(deployment.journal.path if deployment.journal else "orchestrator.journal.sqlite")
