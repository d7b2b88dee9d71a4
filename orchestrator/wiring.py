"""The one place where the configuration picks the adapters: real or simulated, per system.

``mode = "real" | "sim"`` per system in the deployment file; mixing is legal (the lab
runs a real vCenter simulator with simulated Pexip nodes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from adapters.base import CertificateAuthority, Directory, NodeProvisioning, PexipApi, Systems, VSphere
from adapters.bootstrap_store import BootstrapStore, bootstrap_dir
from adapters.syslog import SyslogSender
from config import rules
from config.errors import ConfigError
from config.model import Deployment
from config.rules import NOT_YET_REAL, unbuilt_mode_problem

if TYPE_CHECKING:  # the world is opened by the session; importing it here would slow every start
    from adapters.sim.world import SimWorld

__all__ = ["open_systems", "open_syslog", "refuse_unbuilt", "needs_world", "any_real", "NOT_YET_REAL"]


def needs_world(deployment: Deployment) -> bool:
    return "sim" in (
        deployment.vcenter.mode,
        deployment.pexip_api.mode,
        deployment.console.mode,
        deployment.ldap.mode,
        deployment.pki.mode,
    )


def any_real(deployment: Deployment) -> bool:
    """Whether any system is in real mode: the journal's signing key must then be configured and private."""
    return rules.any_real(
        (deployment.vcenter.mode, deployment.pexip_api.mode, deployment.console.mode, deployment.ldap.mode)
    )


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


def refuse_unbuilt(deployment: Deployment) -> None:
    """``mode = "real"`` for a system whose real adapter is not built: exit 2, before anything is created."""
    modes = {"pexip_api": deployment.pexip_api.mode, "console": deployment.console.mode, "ldap": deployment.ldap.mode}
    problems = [
        (f"{system}.mode", message)
        for system in NOT_YET_REAL
        if (message := unbuilt_mode_problem(system, modes.get(system))) is not None
    ]
    if problems:
        raise ConfigError(problems)


def open_systems(deployment: Deployment, world: SimWorld | None, *, journal: Path | None = None) -> Systems:
    """Build the adapters of one run. ``world`` is the open ``SimWorld`` when any system is simulated.

    ``journal``: the journal's file, beside which the Conferencing Nodes' encrypted bootstrap
    files are kept (default: the configuration's ``journal.path``).
    """
    refuse_unbuilt(deployment)
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
    from adapters.sim.ca import SimCA
    from adapters.sim.console import SimConsole
    from adapters.sim.provisioning import SimProvisioning

    assert world is not None  # the console has no real adapter yet: simulated
    base = Path(deployment.source).parent if deployment.source else None
    ca: CertificateAuthority = ManualCA(deployment, base)
    if deployment.pki.mode == "sim":
        ca = SimCA(world, deployment)
    elif deployment.pki.mode == "command":
        from adapters.ca_command import CommandCA

        ca = CommandCA(deployment, base)
    directory: Directory
    if deployment.ldap.mode == "real":
        from adapters.ldap import LdapDirectory

        directory = LdapDirectory.from_deployment(deployment)
    else:
        from adapters.sim.ldap import SimDirectory

        directory = SimDirectory(world, deployment)
    if provisioning is None:
        provisioning = SimProvisioning(world, deployment)
    pexip: PexipApi
    if deployment.pexip_api.mode == "real":
        from adapters.pexip import HttpPexipApi

        pexip = HttpPexipApi(deployment.pexip_api, ldap=deployment.ldap, address=deployment.management.address)
    else:
        from adapters.sim.pexip import SimPexipApi

        pexip = SimPexipApi(world, deployment, directory)  # its LDAP logins ask this directory, real or simulated
    return Systems(
        vsphere=vsphere,
        pexip=pexip,
        console=SimConsole(world, deployment),
        ca=ca,
        directory=directory,
        provisioning=provisioning,
        bootstrap=BootstrapStore(
            bootstrap_dir(_journal(deployment, journal)), deployment.pexip_api.bootstrap_key, deployment.name
        ),
    )


def _journal(deployment: Deployment, journal: Path | None) -> Path:
    if journal is not None:
        return Path(journal)
    return Path(deployment.journal.path if deployment.journal else "orchestrator.journal.sqlite")
