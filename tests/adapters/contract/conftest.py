"""One fixture per protocol, parametrized over every implementation of it.

A test of ``test_<protocol>_contract.py`` takes the protocol's ``*_case`` fixture and runs
once per implementation: the simulated twin (``sim``, milliseconds, in the fast set) and
each real adapter. A real adapter that needs an outside system is marked (``vcsim``) and
skipped where that system cannot be had. A new real client is added by appending its
param to the protocol's ``*_IMPLEMENTATIONS`` list and its branch to the fixture: from its
first commit it is held to the same tests as the twin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from _contract import CaCase, ConsoleCase, DirectoryCase, PexipCase, ProvisioningCase, VSphereCase
from _openssl_ca import openssl_ca
from _sim_factory import deploy_vm, install_manager, make_deployment, prompts
from _ssh_console import ssh_console
from _vcsim import vcenter

from adapters.base import Directory, NodeProvisioning, PexipApi, Systems
from adapters.ca_command import CommandCA
from adapters.ca_manual import ManualCA
from adapters.ldap import LdapDirectory
from adapters.pexip import HttpPexipApi
from adapters.provisioning import HttpsProvisioning
from adapters.sim import SimCA, SimConsole, SimDirectory, SimPexipApi, SimProvisioning, SimVSphere, SimWorld
from adapters.sim import _pki as pki
from adapters.sim.servers._pexip_auth import make_client_identity
from adapters.sim.servers.pexip_http import PexipServer
from adapters.sim.servers.provisioning_http import ProvisioningServers
from config.model import Deployment
from config.secrets import Secret

# --- the implementations of each protocol ------------------------------------------------

VSPHERE_IMPLEMENTATIONS = ["sim", pytest.param("vcsim", marks=pytest.mark.vcsim)]
# adapters.pexip.HttpPexipApi against the lab HTTPS server (adapters/sim/servers/pexip_http.py) on the same loop.
PEXIP_IMPLEMENTATIONS = ["sim", "http"]
# adapters.console.SshConsole against the lab's SSH console server (adapters/sim/servers/console_ssh.py),
# host key pinned by fingerprint, reboot windows of 50 ms.
CONSOLE_IMPLEMENTATIONS = ["sim", "ssh"]
# adapters.ca_manual.ManualCA is the real CA: the operator is played by the fixture.
# adapters.ca_command.CommandCA runs a real `openssl ca` configured in the test's directory.
CA_IMPLEMENTATIONS = ["sim", "manual", "command"]
# adapters.ldap.LdapDirectory against a private slapd shaped like the deployment's [ldap] section
# (tests/adapters/_slapd.py): it starts in about 0.1 s, once per session, so it stays in the fast set.
# "slapd-ldaps": the same server through its ldaps listener (ldap.transport = "ldaps").
DIRECTORY_IMPLEMENTATIONS = ["sim", "slapd", "slapd-ldaps"]
# adapters.provisioning.HttpsProvisioning against the lab's HTTPS server of each node (milliseconds).
PROVISIONING_IMPLEMENTATIONS = ["sim", "https"]


def sim_pexip(world: SimWorld, deployment: Deployment, directory: Directory) -> PexipApi:
    """The Pexip twin, built in this one place; its LDAP logins ask ``directory``."""
    return SimPexipApi(world, deployment, directory)


def sim_systems(world: SimWorld, deployment: Deployment) -> Systems:
    """Every twin over one world (the Pexip twin from :func:`sim_pexip`)."""
    directory = SimDirectory(world, deployment)
    return Systems(
        vsphere=SimVSphere(world, deployment),
        pexip=sim_pexip(world, deployment, directory),
        console=SimConsole(world, deployment),
        ca=SimCA(world, deployment),
        directory=directory,
    )


# --- VSphere ------------------------------------------------------------------------------


@pytest.fixture(params=VSPHERE_IMPLEMENTATIONS)
async def vsphere_case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VSphereCase]:
    """A VSphere over a world of its own, nothing of ours in it yet (a fresh vcsim for vcsim)."""
    if request.param == "sim":
        world: SimWorld = request.getfixturevalue("world")
        deployment = make_deployment(3, tmp_path)
        case = VSphereCase("sim", SimVSphere(world, deployment), deployment)
    else:
        deployment = request.getfixturevalue("deployment")  # tests/adapters/conftest.py: a fresh vcsim
        case = VSphereCase("vcsim", vcenter(deployment), deployment)
    try:
        yield case
    finally:
        await case.vsphere.aclose()


@pytest.fixture(params=VSPHERE_IMPLEMENTATIONS)
async def vsphere_reader(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VSphereCase]:
    """A VSphere for tests that change nothing: vcsim's is the session's shared one."""
    if request.param == "sim":
        world: SimWorld = request.getfixturevalue("world")
        deployment = make_deployment(3, tmp_path)
        case = VSphereCase("sim", SimVSphere(world, deployment), deployment)
    else:
        deployment = request.getfixturevalue("session_deployment")
        case = VSphereCase("vcsim", vcenter(deployment), deployment)
    try:
        yield case
    finally:
        await case.vsphere.aclose()


# --- PexipApi -----------------------------------------------------------------------------


@pytest.fixture(params=PEXIP_IMPLEMENTATIONS)
async def pexip_case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PexipCase]:
    """A PexipApi talking to a Management Node just through its installation wizard."""
    world: SimWorld = request.getfixturevalue("world")
    deployment = make_deployment(3, tmp_path)
    systems = sim_systems(world, deployment)
    await install_manager(systems, deployment)
    if request.param == "sim":
        case = PexipCase("sim", systems.pexip, deployment)
        try:
            yield case
        finally:
            await case.api.aclose()
        return
    # adapters.pexip.HttpPexipApi against the lab's HTTPS server over the same world (same loop),
    # with a client certificate for ldap.verify_user issued by a CA the server trusts.
    client = make_client_identity(tmp_path / "client", deployment.ldap.verify_user, deployment.ldap.client_certificate)
    async with PexipServer(
        world, deployment, systems.directory, tmp_path / "pexip-server", client_ca_file=client.ca_file
    ) as server:
        spec = dataclasses.replace(
            deployment.pexip_api,
            url=server.url,
            ca_file=str(server.cert_file),
            client_cert=str(client.cert_file),
            client_key=Secret(f"file:{client.key_file}"),
        )
        case = PexipCase(
            "http",
            HttpPexipApi(spec, ldap=deployment.ldap, retry_delay_s=0.01),
            dataclasses.replace(deployment, pexip_api=spec),
        )
        try:
            yield case
        finally:
            await case.api.aclose()


# --- Console ------------------------------------------------------------------------------


@pytest.fixture(params=CONSOLE_IMPLEMENTATIONS)
async def console_case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConsoleCase]:
    """A Console of a Management Node whose VM runs BIOS-locked, before any wizard."""
    world: SimWorld = request.getfixturevalue("world")
    deployment = make_deployment(2, tmp_path)
    systems = sim_systems(world, deployment)
    await deploy_vm(systems, deployment, deployment.management)
    assert deployment.pexip_api.admin_password is not None
    web_password = deployment.pexip_api.admin_password.reveal()
    answers = deployment.policy.installation_wizard.settings()
    if request.param == "sim":
        case = ConsoleCase(
            "sim", systems.console, deployment, web_password, answers, prompts(deployment), systems.pexip
        )
        try:
            yield case
        finally:
            await case.console.aclose()
        return
    async with ssh_console(world, deployment, tmp_path) as (server, console):
        case = ConsoleCase("ssh", console, deployment, web_password, answers, prompts(deployment), systems.pexip)
        try:
            yield case
        finally:
            await case.console.aclose()


# --- CertificateAuthority -------------------------------------------------------------------


@pytest.fixture(params=CA_IMPLEMENTATIONS)
async def ca_case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CaCase]:
    """A CertificateAuthority with nothing submitted yet."""
    deployment = make_deployment(1, tmp_path)
    if request.param == "sim":
        world: SimWorld = request.getfixturevalue("world")

        async def twin_signs(node: str) -> None:
            """The twin signs by itself (the world has no latency here)."""

        case = CaCase("sim", SimCA(world, deployment), deployment, twin_signs)
    elif request.param == "command":
        deployment = dataclasses.replace(deployment, pki=openssl_ca(tmp_path, deployment.pki))

        async def program_signs(node: str) -> None:
            """`openssl ca` signed at submission."""

        case = CaCase("command", CommandCA(deployment, tmp_path), deployment, program_signs)
    else:
        deployment = dataclasses.replace(
            deployment,
            pki=dataclasses.replace(deployment.pki, mode="manual", ca_chain="pki/ca-chain.pem", inbox="pki/inbox"),
        )
        key_pem, root_pem = pki.make_root("contract test root CA")
        (tmp_path / "pki").mkdir(exist_ok=True)
        (tmp_path / "pki" / "ca-chain.pem").write_text(root_pem)

        async def operator_signs(node: str) -> None:
            """The CA operator: signs the CSR in the outbox and drops the certificate in the inbox."""
            csr = (tmp_path / "pki" / "outbox" / f"{node}.csr").read_text()
            inbox = tmp_path / "pki" / "inbox"
            inbox.mkdir(parents=True, exist_ok=True)
            (inbox / f"{node}.pem").write_text(pki.sign_csr(csr, key_pem, root_pem))

        case = CaCase("manual", ManualCA(deployment, tmp_path), deployment, operator_signs)
    try:
        yield case
    finally:
        await case.ca.aclose()


# --- Directory ------------------------------------------------------------------------------


@pytest.fixture(params=DIRECTORY_IMPLEMENTATIONS)
async def directory_case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DirectoryCase]:
    """A Directory holding what the deployment's LDAP section declares."""
    build: Callable[[Deployment], Directory]
    if request.param == "sim":
        world: SimWorld = request.getfixturevalue("world")
        deployment = make_deployment(1, tmp_path)

        def build(d: Deployment) -> Directory:
            return SimDirectory(world, d)

    else:
        server, deployment = request.getfixturevalue("session_slapd")  # tests/adapters/conftest.py
        if request.param == "slapd-ldaps":
            deployment = server.pointed_at(deployment, "ldaps")
        build = LdapDirectory.from_deployment
    case = DirectoryCase(request.param, build(deployment), deployment, build)
    try:
        yield case
    finally:
        await case.directory.aclose()


# --- NodeProvisioning -------------------------------------------------------------------------


@pytest.fixture(params=PROVISIONING_IMPLEMENTATIONS)
async def provisioning_case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProvisioningCase]:
    """A NodeProvisioning of Conferencing Nodes whose VMs do not run yet; the Manager is installed."""
    world: SimWorld = request.getfixturevalue("world")
    deployment = make_deployment(3, tmp_path)
    systems = sim_systems(world, deployment)
    await install_manager(systems, deployment)
    servers: ProvisioningServers | None = None
    provisioning: NodeProvisioning
    if request.param == "sim":
        case_deployment, provisioning = deployment, SimProvisioning(world, deployment)
    else:
        servers = ProvisioningServers(world, deployment, tmp_path / "provisioning", poll_s=3600)  # refresh by hand
        await servers.start()
        nodes = tuple(
            dataclasses.replace(
                n, provisioning_url=servers.url(n.name), provisioning_thumbprint=servers.thumbprint(n.name)
            )
            for n in deployment.conferencing
        )
        case_deployment = dataclasses.replace(
            deployment,
            conferencing=nodes,
            pexip_api=dataclasses.replace(deployment.pexip_api, mode="real"),
        )
        provisioning = HttpsProvisioning(case_deployment, timeout_s=5)

    async def boot(name: str) -> None:
        """The node's VM runs; its provisioning interface answers."""
        await deploy_vm(systems, deployment, deployment.node(name))
        if servers is not None:
            await servers.refresh()

    case = ProvisioningCase(request.param, provisioning, case_deployment, systems, boot)
    try:
        yield case
    finally:
        await provisioning.aclose()
        if servers is not None:
            await servers.aclose()
