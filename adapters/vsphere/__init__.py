"""The real vSphere adapter: one facade (:class:`VCenter`) over single-purpose helpers.

pyVmomi runs in worker threads; its errors are translated once, at the boundary
(:func:`map_vmomi_errors`). The helpers, each with one job:

- ``_session``: the login, TLS trust (CA file or SHA-256 pin) and re-login after ``NotAuthenticated``
- ``_inventory``: finding the datacenter, hosts, datastores, networks and folder
- ``_reads``: batched PropertyCollector reads of the managed VMs
- ``_batch``: task waiting and in-flight de-duplication shared by concurrent steps
- ``_preflight``: the host-environment checks before any change
- ``_ova`` and ``_lease``: reading an OVA and streaming its disks to an HttpNfcLease
- ``_power``: batched power-ons
- ``_keys``: the BIOS password as USB scan codes
- ``_watch``: the ``WaitForUpdatesEx`` inventory watch
"""

from adapters.vsphere._vcenter import IDENTITY_FIELD, InventoryEvent, VCenter, map_vmomi_errors

__all__ = ["IDENTITY_FIELD", "InventoryEvent", "VCenter", "map_vmomi_errors"]
