"""What a freshly installed Management Node holds: the API objects the installation wizard creates.

Shared by the console twin, which applies them in the installation wizard's own transaction,
and the Pexip twin, which serves them (and builds its own objects the same way). Neither twin
imports the other: both import this module.
"""

from __future__ import annotations

from typing import Any

from adapters.sim import _pki as pki
from adapters.sim._pexip_schema import PERMISSIONS, ROLES, defaults, uri_of
from adapters.sim.world import pexip_system
from config.model import Deployment

__all__ = ["COUNTERS", "PROVISIONED", "stored", "management_node_defaults"]

COUNTERS = pexip_system("_next")  # key: resource -> next id; "configuration_id"
# key: Conferencing Node name -> {"sha256": of the bootstrap file its provisioning interface took}
PROVISIONED = "provisioning:node"


def stored(resource: str, ident: int, fields: dict[str, Any]) -> dict[str, Any]:
    """A ``resource`` object as the store keeps it: the defaults, ``fields`` and its id."""
    return {**defaults(resource), **fields, "id": ident}


def management_node_defaults(deployment: Deployment) -> list[tuple[str, str, Any]]:
    """The objects a freshly installed Management Node has, as world changes.

    Applied by the console twin in the installation wizard's own transaction.
    """
    mgr = deployment.management
    changes: list[tuple[str, str, Any]] = [
        (pexip_system("global"), "1", stored("global", 1, {})),
        (pexip_system("authentication"), "1", stored("authentication", 1, {})),
        # id 2, not 1: clients must pick the primary one, as on real nodes (SDK #78).
        (
            pexip_system("management_vm"),
            "2",
            stored(
                "management_vm",
                2,
                {
                    "name": mgr.name,
                    "hostname": mgr.hostname,
                    "domain": mgr.domain,
                    "address": mgr.address,
                    "netmask": mgr.netmask,
                    "gateway": mgr.gateway,
                    "primary": True,
                },
            ),
        ),
    ]
    permission_ids = {}
    for ident, (name, codename) in enumerate(PERMISSIONS, start=1):
        permission_ids[name] = ident
        changes.append((pexip_system("permission"), str(ident), {"id": ident, "name": name, "codename": codename}))
    for ident, (name, names) in enumerate(ROLES, start=1):
        uris = [uri_of("permission", permission_ids[n]) for n in names]
        changes.append((pexip_system("role"), str(ident), stored("role", ident, {"name": name, "permissions": uris})))
    # The temporary self-signed certificate every node ships with (EC: fast to make).
    key = pki.new_key("ECDSAP256")
    cert = pki.self_signed(mgr.fqdn, key)
    meta = pki.certificate_fields(pki.load_certs(cert)[0])
    changes.append(
        (
            pexip_system("tls_certificate"),
            "1",
            stored(
                "tls_certificate",
                1,
                {
                    **meta,
                    "certificate": cert,
                    "nodes": [mgr.fqdn],
                    "_key_pem": pki.key_pem(key),
                    "_key_fingerprint": pki.fingerprint(key.public_key()),
                },
            ),
        )
    )
    nexts = {
        "global": 2,
        "authentication": 2,
        "management_vm": 3,
        "permission": len(PERMISSIONS) + 1,
        "role": len(ROLES) + 1,
        "tls_certificate": 2,
    }
    changes += [(COUNTERS, resource, ident) for resource, ident in nexts.items()]
    return changes
