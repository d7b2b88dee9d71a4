"""Shared helpers for the simulated twins' tests: a deployment, a world, and the guide's
happy path driven straight through the twins (no engine), used to bring a world to the
state a test needs and as the benchmark's workload."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from adapters import Systems
from adapters.base import DiskAllocation, Reservation, VmState
from adapters.sim import SimCA, SimConsole, SimDirectory, SimPexipApi, SimProvisioning, SimVSphere, SimWorld
from adapters.sim.servers.pexip_http import PexipServer
from config.load import simulated_deployment
from config.model import Deployment, NodeSpec, PexipApiSpec

__all__ = [
    "CONFIG",
    "GLOBAL",
    "AUTH",
    "make_deployment",
    "make_systems",
    "identity",
    "full_reservation",
    "deploy_vm",
    "install_manager",
    "served_manager",
    "harden_manager",
    "certify",
    "authenticate_ldap",
    "ldap_with_local",
    "deploy_conferencing",
    "worker_vm_fields",
    "WORKER_PASSWORD",
    "prompts",
]

# The Management API resources the happy path and the twins' tests patch most.
CONFIG = "/api/admin/configuration/v1/"
GLOBAL = CONFIG + "global/1/"
AUTH = CONFIG + "authentication/1/"


def make_deployment(nodes: int, tmp_path: Path) -> Deployment:
    """The simulated deployment of ``nodes`` nodes (1 Management Node first)."""
    return simulated_deployment(nodes, tmp_path)


def make_systems(world: SimWorld, deployment: Deployment) -> Systems:
    directory = SimDirectory(world, deployment)
    return Systems(
        vsphere=SimVSphere(world, deployment),
        pexip=SimPexipApi(world, deployment, directory),
        console=SimConsole(world, deployment),
        ca=SimCA(world, deployment),
        directory=directory,
        provisioning=SimProvisioning(world, deployment),
    )


def identity(deployment: Deployment, node: NodeSpec) -> str:
    return f"{deployment.name}/{node.name}"


def full_reservation(deployment: Deployment, node: NodeSpec, mhz: int = 2400) -> Reservation:
    """What the guide asks for: everything reserved, limit = reservation, shares normal."""
    cpu = node.cpus * mhz
    datastore = deployment.host(node.host).datastore
    return Reservation(
        cpu,
        cpu,
        "normal",
        node.memory_mb,
        node.memory_mb,
        "normal",
        True,
        (DiskAllocation(2000, "Hard disk 1", datastore, "normal", node.disk_iops_limit),),
    )


def prompts(deployment: Deployment) -> dict[str, Any]:
    """The security wizard answers: the policy's prompts without its own settings."""
    return deployment.policy.security_wizard.settings()


async def deploy_vm(systems: Systems, deployment: Deployment, node: NodeSpec) -> VmState:
    """Import, reserve and BIOS-lock one node's VM."""
    ova = deployment.ova.management if node.role == "management" else deployment.ova.conferencing
    vm = await systems.vsphere.import_ova(node, identity(deployment, node), ova)
    await systems.vsphere.set_reservation(vm, full_reservation(deployment, node))
    assert deployment.bios.password is not None
    await systems.vsphere.lock_bios(vm, deployment.bios.password.reveal())
    return vm


async def install_manager(systems: Systems, deployment: Deployment) -> None:
    """The Management Node deployed, reserved, BIOS-locked and through the installation wizard."""
    assert deployment.pexip_api.admin_password is not None
    await deploy_vm(systems, deployment, deployment.management)
    await systems.console.installation_wizard(
        deployment.management,
        deployment.pexip_api.admin_password.reveal(),
        deployment.policy.installation_wizard.settings(),
    )


@asynccontextmanager
async def served_manager(
    world: SimWorld, tmp_path: Path
) -> AsyncIterator[tuple[Deployment, Systems, PexipServer, PexipApiSpec]]:
    """A 1-node deployment's Manager installed in ``world`` and served by the lab's HTTPS server on 127.0.0.1:
    the deployment, its twins, the server, and the ``pexip_api`` spec that points the real client at it."""
    deployment = make_deployment(1, tmp_path)
    systems = make_systems(world, deployment)
    await install_manager(systems, deployment)
    async with PexipServer(world, deployment, systems.directory, tmp_path / "pexip") as server:
        yield (
            deployment,
            systems,
            server,
            dataclasses.replace(deployment.pexip_api, url=server.url, ca_file=str(server.cert_file)),
        )


async def harden_manager(systems: Systems, deployment: Deployment) -> dict[str, str]:
    """Security wizard, global settings, network services, locations; returns location URIs."""
    assert deployment.pexip_api.admin_password is not None
    await systems.console.security_wizard(
        deployment.management, deployment.pexip_api.admin_password.reveal(), prompts(deployment)
    )
    api = systems.pexip
    settings = deployment.policy.global_settings.settings()
    await api.patch(GLOBAL, settings)
    dns = [(await api.create("dns_server", {"address": a})).uri for a in deployment.network.dns_servers]
    ntp = [
        (await api.create("ntp_server", {"address": s.address, "key_id": s.key_id, "key": s.key.reveal()})).uri
        for s in deployment.network.ntp_servers
    ]
    syslog = [
        (await api.create("syslog_server", {"address": s.address, "port": s.port, "transport": s.transport})).uri
        for s in deployment.network.syslog_servers
    ]
    location = deployment.policy.location.settings()
    locations = {}
    for name in deployment.network.locations:
        created = await api.create(
            "system_location",
            {"name": name, **location, "dns_servers": dns, "ntp_servers": ntp, "syslog_servers": syslog},
        )
        locations[name] = created.uri
    [manager] = await api.list_objects("management_vm", primary=True)
    await api.patch(
        manager["resource_uri"],
        {
            "dns_servers": dns,
            "ntp_servers": ntp,
            "syslog_servers": syslog,
            "snmp_mode": "AUTHPRIV",
            "snmp_username": deployment.snmp.username,
            "snmp_community": deployment.snmp.community,
            "snmp_authentication_password": deployment.snmp.authentication_password.reveal(),
            "snmp_privacy_password": deployment.snmp.privacy_password.reveal(),
        },
    )
    return locations


async def certify(systems: Systems, node: NodeSpec, node_uri: str) -> str:
    """CSR on the Manager, signed by the CA, completed and assigned; returns the cert URI."""
    api = systems.pexip
    csr = await api.create("certificate_signing_request", {"subject_name": node.fqdn, "private_key_type": "ECDSAP256"})
    await systems.ca.submit(node.name, (await api.get(csr.uri))["csr"])
    signed = await systems.ca.collect(node.name)
    assert signed is not None
    await api.patch(csr.uri, {"certificate": signed})
    # The Manager's temporary self-signed certificate has the same subject: pick ours.
    [cert] = [
        c for c in await api.list_objects("tls_certificate", subject_name=node.fqdn) if c["certificate"] == signed
    ]
    await api.patch(node_uri, {"tls_certificate": cert["resource_uri"]})
    return str(cert["resource_uri"])


def ldap_with_local(deployment: Deployment) -> dict[str, Any]:
    """The guide's first authentication change: the deployment's directory, local logins still allowed."""
    ldap = deployment.ldap
    assert ldap.bind_password is not None
    return {
        "source": "LDAP+LOCAL",
        "ldap_server": ldap.server,
        "ldap_base_dn": ldap.base_dn,
        "ldap_bind_username": ldap.bind_username,
        "ldap_bind_password": ldap.bind_password.reveal(),
    }


async def authenticate_ldap(systems: Systems, deployment: Deployment) -> str:
    """Roles, LDAP, role mappings, client certificates, LDAP only: each verified first."""
    api, ldap = systems.pexip, deployment.ldap
    auditor_permissions = [
        p["resource_uri"]
        for p in await api.list_objects("permission")
        if p["name"] in deployment.policy.roles.auditor_permissions
    ]
    await api.create("role", {"name": "Auditor", "permissions": auditor_permissions})
    await api.patch(AUTH, ldap_with_local(deployment))
    for mapping in ldap.role_mappings:
        roles = [r["resource_uri"] for name in mapping.roles for r in await api.list_objects("role", name=name)]
        await api.create("ldap_role", {"name": mapping.name, "ldap_group_dn": mapping.group_dn, "roles": roles})
    await api.verify_login(use_client_cert=False)
    await api.patch(AUTH, {"client_certificate": ldap.client_certificate})
    await api.verify_login(use_client_cert=True)
    await api.patch(AUTH, {"source": "LDAP"})
    return await api.verify_login(use_client_cert=True)


# The SSH password a worker_vm POST must carry (pexip-api.md 7.4); no test logs in with it.
WORKER_PASSWORD = "never-used-ssh-password"


def worker_vm_fields(node: NodeSpec, location_uri: str) -> dict[str, Any]:
    """The fields of the worker_vm POST that makes ``node`` a Conferencing Node of the Manager, in ``location_uri``."""
    return {
        "name": node.name,
        "hostname": node.hostname,
        "domain": node.domain,
        "address": node.address,
        "netmask": node.netmask,
        "gateway": node.gateway,
        "system_location": location_uri,
        "password": WORKER_PASSWORD,
    }


async def deploy_conferencing(systems: Systems, deployment: Deployment, node: NodeSpec, location_uri: str) -> None:
    """worker_vm on the Manager, then the VM, provisioned with its bootstrap file, then its certificate."""
    created = await systems.pexip.create("worker_vm", worker_vm_fields(node, location_uri))
    await deploy_vm(systems, deployment, node)
    assert systems.provisioning is not None
    await systems.provisioning.upload_bootstrap(node, created.body)
    await certify(systems, node, created.uri)
    await systems.pexip.patch(created.uri, {"alternative_fqdn": node.sip_tls_fqdn or node.fqdn})
