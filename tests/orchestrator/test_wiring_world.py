"""When a run opens the simulated world (orchestrator.wiring.needs_world)."""

from __future__ import annotations

import dataclasses

from config.load import simulated_deployment
from config.model import Deployment
from orchestrator.wiring import needs_world


def _all_real(d: Deployment, *, shared: bool) -> Deployment:
    return dataclasses.replace(
        d,
        vcenter=dataclasses.replace(d.vcenter, mode="real"),
        pexip_api=dataclasses.replace(d.pexip_api, mode="real"),
        console=dataclasses.replace(d.console, mode="real"),
        ldap=dataclasses.replace(d.ldap, mode="real"),
        pki=dataclasses.replace(d.pki, mode="command"),
        simulation=dataclasses.replace(d.simulation, shared=shared),
    )


def test_a_wholly_real_deployment_opens_no_world(tmp_path) -> None:
    assert not needs_world(_all_real(simulated_deployment(2, tmp_path), shared=False))


def test_a_world_shared_with_simulators_behind_real_clients_is_opened(tmp_path) -> None:
    """The lab: every client real, the Pexip nodes simulated behind them; the VMs vCenter holds must be mirrored
    into the shared world or the simulated Manager never sees its VM (the installation wizard is refused)."""
    assert needs_world(_all_real(simulated_deployment(2, tmp_path), shared=True))


def test_any_simulated_system_opens_the_world(tmp_path) -> None:
    d = _all_real(simulated_deployment(2, tmp_path), shared=False)
    assert needs_world(dataclasses.replace(d, pki=dataclasses.replace(d.pki, mode="sim")))
