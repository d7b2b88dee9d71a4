"""The one place where the configuration picks the adapters: real or simulated, per system.

``mode = "real" | "sim"`` per system in the deployment file; mixing is legal (the lab
runs a real vCenter simulator with simulated Pexip nodes).
"""

from __future__ import annotations

from pathlib import Path

from adapters.base import Systems
from adapters.bootstrap_store import BootstrapStore, bootstrap_dir
from config.errors import ConfigError
from config.model import Deployment
from config.rules import NOT_YET_REAL, unbuilt_mode_problem

__all__ = ["open_systems", "needs_world", "NOT_YET_REAL"]


def needs_world(deployment: Deployment) -> bool:
    return "sim" in (
        deployment.vcenter.mode,
        deployment.pexip_api.mode,
        deployment.console.mode,
        deployment.ldap.mode,
        deployment.pki.mode,
    )


def _refuse_unbuilt(deployment: Deployment) -> None:
    """The refusal ``load_deployment`` already reports with every other problem, kept for a deployment built in code."""
    modes = {"pexip_api": deployment.pexip_api.mode, "console": deployment.console.mode, "ldap": deployment.ldap.mode}
    problems = [(f"{system}.mode", message) for system in NOT_YET_REAL
                if (message := unbuilt_mode_problem(system, modes.get(system))) is not None]
    if problems:
        raise ConfigError(problems)


def _refuse_unbuilt_provisioning(deployment: Deployment) -> None:
    """Apart from the API client's own refusal: still refused once the real management API client exists."""
    if deployment.pexip_api.mode == "real" and deployment.conferencing:
        raise ConfigError([("pexip_api.mode", '"real" cannot provision Conferencing Nodes yet: the upload of their '
                            "bootstrap file to the provisioning interface (HTTPS, tcp/8443 of each node) is not "
                            'built; set pexip_api.mode = "sim" for now')])


def open_systems(deployment: Deployment, world: object | None, *, journal: Path | None = None) -> Systems:
    """Build the adapters of one run. ``world`` is the open ``SimWorld`` when any system is simulated.

    ``journal``: the journal's file, beside which the Conferencing Nodes' encrypted bootstrap
    files are kept (default: the configuration's ``journal.path``).
    """
    _refuse_unbuilt(deployment)
    _refuse_unbuilt_provisioning(deployment)
    from adapters.ca_manual import ManualCA

    if needs_world(deployment) and world is None:
        raise RuntimeError("a simulated system needs the simulated world open")
    if deployment.vcenter.mode == "real":
        from adapters.vsphere import VCenter

        vsphere = VCenter.from_deployment(deployment)
        if world is not None:
            # Real VMs, simulated nodes (the lab): the twins must see what the VMs do.
            from adapters.sim.bridge import MirroredVSphere

            vsphere = MirroredVSphere(vsphere, world)
    else:
        from adapters.sim.vsphere import SimVSphere

        vsphere = SimVSphere(world, deployment)
    from adapters.sim.ca import SimCA
    from adapters.sim.console import SimConsole
    from adapters.sim.ldap import SimDirectory
    from adapters.sim.pexip import SimPexipApi
    from adapters.sim.provisioning import SimProvisioning

    ca = SimCA(world, deployment) if deployment.pki.mode == "sim" else ManualCA(deployment, Path(deployment.source).parent if deployment.source else None)
    directory = SimDirectory(world, deployment)
    return Systems(
        vsphere=vsphere,
        pexip=SimPexipApi(world, deployment, directory),  # its LDAP logins ask this directory
        console=SimConsole(world, deployment),
        ca=ca,
        directory=directory,
        provisioning=SimProvisioning(world, deployment),
        bootstrap=BootstrapStore(bootstrap_dir(_journal(deployment, journal)), deployment.pexip_api.bootstrap_key,
                                 deployment.name),
    )


def _journal(deployment: Deployment, journal: Path | None) -> Path:
    if journal is not None:
        return Path(journal)
    return Path(deployment.journal.path if deployment.journal else "orchestrator.journal.sqlite")
