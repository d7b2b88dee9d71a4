"""vcsim's inventory shaped the way the guide wants a host: a VM vSwitch, VLAN portgroups, a VM folder."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from orchestrator.lab._vcsim import Vcsim

__all__ = ["LAB_HOSTS", "prepare_inventory"]

# The lab's hosts as vcsim names them, and how lab_up shapes each: the VMs' vSwitch and
# the Pexip portgroup with its VLAN. vcsim refuses one portgroup name on two hosts (vSphere
# would share it), hence one name per host.
LAB_HOSTS: dict[str, dict[str, Any]] = {
    "DC0_H0": {"vswitch": "vSwitch1", "portgroup": "Pexip-VLAN100", "vlan": 100},
    "DC0_C0_H0": {"vswitch": "vSwitch1", "portgroup": "Pexip-VLAN200", "vlan": 200},
}


def prepare_inventory(vc: Vcsim, *, hosts: Mapping[str, Mapping[str, Any]] = LAB_HOSTS, folder: str = "pexip") -> None:
    """Shape vcsim like a host the guide accepts, as ``lab up`` does.

    Per host a vSwitch for the VMs apart from vSwitch0 (management), a Pexip portgroup
    with its VLAN on it; and a VM folder.
    Idempotent: what exists is left alone.
    """
    import pyVim.connect
    import pyVmomi

    # pyVmomi's type information is partial (its calls are untyped): its objects are Any here.
    connect: Any = pyVim.connect
    vim: Any = pyVmomi.vim
    parts = urlsplit(vc.url)
    si = connect.SmartConnect(
        host=parts.hostname,
        port=parts.port,
        user=vc.user,
        pwd=vc.password,
        sslContext=ssl.create_default_context(cafile=str(vc.ca_file)),
    )
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
        by_name = {h.name: h for h in view.view}
        for name, shape in hosts.items():
            net = by_name[name].configManager.networkSystem
            info = net.networkInfo
            if shape["vswitch"] not in {s.name for s in info.vswitch or ()}:
                spec = vim.host.VirtualSwitch.Specification(numPorts=128)
                net.AddVirtualSwitch(vswitchName=shape["vswitch"], spec=spec)
            if shape["portgroup"] not in {p.spec.name for p in info.portgroup or ()}:
                net.AddPortGroup(
                    portgrp=vim.host.PortGroup.Specification(
                        name=shape["portgroup"],
                        vlanId=shape["vlan"],
                        vswitchName=shape["vswitch"],
                        policy=vim.host.NetworkPolicy(),
                    )
                )
        dc = content.searchIndex.FindByInventoryPath("DC0")
        if folder and content.searchIndex.FindByInventoryPath(f"DC0/vm/{folder}") is None:
            dc.vmFolder.CreateFolder(folder)
    finally:
        connect.Disconnect(si)
