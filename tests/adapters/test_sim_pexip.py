"""The simulated Management API: resources, validation, secrets, CSRs and who can log in."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from _sim_factory import (
    authenticate_ldap,
    deploy_vm,
    harden_manager,
    install_manager,
    make_deployment,
    make_systems,
)

from adapters import PexipApi, Systems
from adapters.base import Created
from adapters.sim import FaultPlan, SimDirectory, SimPexipApi, SimWorld
from adapters.sim import _pki as pki
from config.errors import Rejected, Unreachable
from config.model import Deployment, NodeSpec

BASE = "/api/admin/configuration/v1/"
GLOBAL = BASE + "global/1/"
AUTH = BASE + "authentication/1/"


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return make_deployment(3, tmp_path)


@pytest.fixture
async def systems(world: SimWorld, deployment: Deployment) -> Systems:
    """A world whose Management Node is installed (the API answers)."""
    s = make_systems(world, deployment)
    await install_manager(s, deployment)
    return s


def test_conforms_to_the_protocol(world: SimWorld, deployment: Deployment) -> None:
    """SimPexipApi is a PexipApi."""
    assert isinstance(SimPexipApi(world, deployment, SimDirectory(world, deployment)), PexipApi)


async def test_api_is_unreachable_before_installation(world: SimWorld, deployment: Deployment) -> None:
    """Before the installation wizard the Management Node does not answer."""
    api = SimPexipApi(world, deployment, SimDirectory(world, deployment))
    with pytest.raises(Unreachable, match="installation wizard has not run"):
        await api.get(GLOBAL)


async def test_installed_manager_has_the_api_defaults(systems: Systems, deployment: Deployment) -> None:
    """A fresh Management Node shows pexip-api.md's defaults, roles and certificate."""
    api = systems.pexip
    settings = await api.get(GLOBAL)
    assert (
        settings["enable_chat"],
        settings["management_qos"],
        settings["ocsp_state"],
        settings["management_session_timeout"],
        settings["resource_uri"],
    ) == (True, 0, "OFF", 30, GLOBAL)
    auth = await api.get(AUTH)
    assert (auth["source"], auth["client_certificate"]) == ("LOCAL", "NO")
    [manager] = await api.list_objects("management_vm")
    assert (manager["id"], manager["primary"], manager["snmp_mode"], manager["snmp_community"]) == (
        2,
        True,
        "DISABLED",
        "public",
    )
    names = {p["name"] for p in await api.list_objects("permission")}
    assert {
        "Is an administrator",
        "May use web interface",
        "May use API",
        "May view logs",
        "May generate system snapshot",
        "May change configuration",
        "May view configuration",
        "May manage conferences",
    } <= names
    for role in ("Read-only", "Read-write"):
        [found] = await api.list_objects("role", name=role)
        embedded = {p["name"] for p in found["permissions"]}
        assert {"May view logs", "May generate system snapshot"} <= embedded
        assert all(p["resource_uri"].startswith(BASE + "permission/") for p in found["permissions"])
    # pexip-api.md 7.1: exactly the two built-in roles; no "Administrator" (the local admin is outside roles).
    assert sorted(r["name"] for r in await api.list_objects("role")) == ["Read-only", "Read-write"]
    assert await api.list_objects("role", name="Administrator") == []
    [cert] = await api.list_objects("tls_certificate")
    assert (cert["id"], cert["subject_name"], cert["issuer_name"]) == (
        1,
        deployment.management.fqdn,
        f"CN={deployment.management.fqdn}",
    )
    assert await api.list_objects("system_location") == []


async def test_list_filters_exactly(systems: Systems) -> None:
    """list() filters on exact field values and refuses unknown fields."""
    api = systems.pexip
    await api.create("dns_server", {"address": "10.0.0.2"})
    await api.create("dns_server", {"address": "10.0.0.3", "description": "second"})
    assert [d["address"] for d in await api.list_objects("dns_server", address="10.0.0.3")] == ["10.0.0.3"]
    assert [d["address"] for d in await api.list_objects("dns_server", description__icontains="SEC")] == ["10.0.0.3"]
    assert await api.list_objects("dns_server", address="10.0.0.9") == []
    with pytest.raises(Rejected, match="cannot filter on 'colour'"):
        await api.list_objects("dns_server", colour="blue")


@pytest.mark.parametrize(
    ("verb", "target", "fields", "field"),
    [
        ("patch", "global/1/", {"management_qos": 64}, "management_qos"),  # DSCP 0..63
        ("patch", "global/1/", {"ocsp_state": "MAYBE"}, "ocsp_state"),  # enum
        ("patch", "global/1/", {"management_session_timeout": 4}, "management_session_timeout"),  # 5..1440
        ("patch", "global/1/", {"enable_chat": "no"}, "enable_chat"),  # bool
        ("patch", "global/1/", {"enable_chatt": False}, "enable_chatt"),  # unknown field
        (
            "patch",
            "management_vm/2/",
            {"snmp_authentication_password": "short"},
            "snmp_authentication_password",
        ),  # 8..100 characters
        ("patch", "management_vm/2/", {"snmp_community": "c" * 17}, "snmp_community"),  # <= 16
        ("patch", "management_vm/2/", {"mtu": 1501}, "mtu"),  # 512..1500
        ("patch", "management_vm/2/", {"primary": False}, "primary"),  # read-only
        ("patch", "authentication/1/", {"client_certificate": "CN"}, "client_certificate"),  # needs LDAP
        ("create", "system_location", {"name": "l", "media_qos": 64}, "media_qos"),  # 0..63
        ("create", "system_location", {"name": "l", "mtu": 511}, "mtu"),  # 512..1500
        ("create", "dns_server", {"address": "dns.example.com"}, "address"),  # IP only
        ("create", "ntp_server", {"address": "ntp", "key_id": 0}, "key_id"),  # 1..65535
        ("create", "syslog_server", {"address": "s", "transport": "smtp"}, "transport"),  # enum
        (
            "create",
            "certificate_signing_request",
            {"subject_name": "x", "private_key_type": "DSA"},
            "private_key_type",
        ),  # enum
        (
            "create",
            "worker_vm",
            {"name": "w", "hostname": "w", "address": "10.0.0.9", "netmask": "255.0.0.0", "gateway": "10.0.0.1"},
            "system_location",
        ),  # required
        ("create", "role", {"name": "r", "permissions": [BASE + "permission/999/"]}, "permissions"),  # FK must exist
    ],
)
async def test_validation_rejects_with_the_field(
    systems: Systems, verb: str, target: str, fields: dict, field: str
) -> None:
    """Values the API would refuse are Rejected with a field-keyed message, nothing changed."""
    api = systems.pexip
    before = systems.pexip._world.effects_summary()  # noqa: SLF001 - effects prove nothing changed
    with pytest.raises(Rejected, match=f'"{field}"'):
        if verb == "patch":
            await api.patch(BASE + target, fields)
        else:
            await api.create(target, fields)
    assert systems.pexip._world.effects_summary() == before  # noqa: SLF001


@pytest.mark.parametrize(
    ("verb", "target"),
    [
        ("create", "global"),  # singleton
        ("create", "authentication"),  # singleton
        ("create", "permission"),  # read-only
        ("delete", "authentication/1/"),  # deleting a singleton would reset it
        ("delete", "management_vm/2/"),  # singleton-ish
        ("patch", "permission/1/"),  # read-only
    ],
)
async def test_verbs_not_allowed(systems: Systems, verb: str, target: str) -> None:
    """POST/DELETE on singletons and writes on permissions are 405."""
    api = systems.pexip
    with pytest.raises(Rejected, match="405"):
        if verb == "create":
            await api.create(target, {})
        elif verb == "delete":
            await api.delete(BASE + target)
        else:
            await api.patch(BASE + target, {"name": "x"})


async def test_write_only_fields_are_never_returned(systems: Systems, world: SimWorld) -> None:
    """Passwords and keys are accepted, never shown, and never stored in clear."""
    api = systems.pexip
    ntp = await api.create("ntp_server", {"address": "10.0.0.4", "key_id": 7, "key": "ntp-key-value-1"})
    await api.patch(
        BASE + "management_vm/2/",
        {
            "snmp_mode": "AUTHPRIV",
            "snmp_privacy_password": "priv-secret-2",
            "snmp_authentication_password": "auth-secret-3",
        },
    )
    await api.patch(AUTH, {"ldap_bind_password": "bind-secret-4"})
    shown = [await api.get(ntp.uri), await api.get(BASE + "management_vm/2/"), await api.get(AUTH)]
    for obj in shown:
        assert not {"key", "snmp_privacy_password", "snmp_authentication_password", "ldap_bind_password"} & set(obj)
        assert not any(k.startswith("_") for k in obj)
    assert shown[0]["key_id"] == 7 and shown[1]["snmp_mode"] == "AUTHPRIV"
    world.close()
    data = world.path.read_bytes()
    for secret in (b"ntp-key-value-1", b"priv-secret-2", b"auth-secret-3", b"bind-secret-4"):
        assert secret not in data


async def test_fk_lists_come_back_embedded(systems: Systems) -> None:
    """management_vm dns_servers are written as URIs and read back as objects."""
    api = systems.pexip
    dns = await api.create("dns_server", {"address": "10.0.0.2"})
    await api.patch(BASE + "management_vm/2/", {"dns_servers": [dns.uri]})
    manager = await api.get(BASE + "management_vm/2/")
    assert [(d["address"], d["resource_uri"]) for d in manager["dns_servers"]] == [("10.0.0.2", dns.uri)]


async def test_unique_names(systems: Systems) -> None:
    """A second role of the same name is Rejected."""
    await systems.pexip.create("role", {"name": "Auditor"})
    with pytest.raises(Rejected, match='"name"'):
        await systems.pexip.create("role", {"name": "Auditor"})


async def test_csr_is_real_and_verifies_with_openssl(systems: Systems, deployment: Deployment, tmp_path: Path) -> None:
    """A CSR POST makes a real CSR (CN, SANs, key type) that openssl verifies."""
    conf = deployment.conferencing[0]
    created = await systems.pexip.create(
        "certificate_signing_request",
        {
            "subject_name": conf.fqdn,
            "private_key_type": "ECDSAP256",
            "dn": "O=Example,C=GB",
            "additional_subject_alt_names": "pool.example.com, other.example.com",
        },
    )
    shown = await systems.pexip.get(created.uri)
    assert "private_key" not in shown
    csr = pki.load_csr(shown["csr"])
    assert pki.csr_names(csr) == (conf.fqdn, [conf.fqdn, "pool.example.com", "other.example.com"])
    (tmp_path / "req.csr").write_text(shown["csr"])
    checked = subprocess.run(
        ["openssl", "req", "-verify", "-noout", "-in", str(tmp_path / "req.csr")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert systems.pexip._world.effects_summary()[conf.name]["csr_create"] == 1  # noqa: SLF001


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"private_key_type": "UPLOAD"}, "private_key"),  # UPLOAD needs a key
        ({"private_key_type": "ECDSAP256", "private_key": "x"}, "private_key"),  # a key only with UPLOAD
        ({"private_key_type": "ECDSAP256", "dn": "X=1"}, "dn"),  # unknown subject field
    ],
)
async def test_csr_refusals(systems: Systems, fields: dict, field: str) -> None:
    """Inconsistent CSR requests are Rejected naming the field."""
    with pytest.raises(Rejected, match=f'"{field}"'):
        await systems.pexip.create("certificate_signing_request", {"subject_name": "n.example.com", **fields})


async def test_csr_completion_makes_a_tls_certificate(
    systems: Systems, world: SimWorld, deployment: Deployment
) -> None:
    """PATCHing the signed certificate on its CSR creates the tls_certificate and deletes the CSR."""
    api, conf = systems.pexip, deployment.conferencing[0]
    csr = await api.create("certificate_signing_request", {"subject_name": conf.fqdn, "private_key_type": "ECDSAP256"})
    await systems.ca.submit(conf.name, (await api.get(csr.uri))["csr"])
    signed = await systems.ca.collect(conf.name)
    assert signed is not None
    await api.patch(csr.uri, {"certificate": signed})
    [cert] = await api.list_objects("tls_certificate", subject_name=conf.fqdn)
    assert cert["nodes"] == [] and "CN=simulation simulated root CA" in cert["issuer_name"]
    assert cert["serial_no"] and cert["server_auth_usage"] and cert["client_auth_usage"]
    assert "private_key" not in cert
    with pytest.raises(Rejected, match="404"):
        await api.get(csr.uri)
    assert world.effects_summary()[conf.name] == {"csr_create": 1, "cert_sign": 1, "cert_complete": 1}


async def test_csr_completion_refuses_another_key(systems: Systems, deployment: Deployment) -> None:
    """A certificate for another CSR's key is refused with the guide's message; the CSR stays."""
    api, (one, two) = systems.pexip, deployment.conferencing
    first = await api.create("certificate_signing_request", {"subject_name": one.fqdn, "private_key_type": "ECDSAP256"})
    second = await api.create(
        "certificate_signing_request", {"subject_name": two.fqdn, "private_key_type": "ECDSAP256"}
    )
    await systems.ca.submit(two.name, (await api.get(second.uri))["csr"])
    wrong = await systems.ca.collect(two.name)
    with pytest.raises(Rejected, match="Certificate and private key do not appear to be part of the same key pair"):
        await api.patch(first.uri, {"certificate": wrong})
    with pytest.raises(Rejected, match="cannot be modified"):
        await api.patch(first.uri, {"subject_name": "other"})
    assert (await api.get(first.uri))["subject_name"] == one.fqdn


async def test_tls_certificate_upload_checks_the_key_pair(systems: Systems) -> None:
    """A TLS certificate upload needs the private key that pairs with it."""
    key, other = pki.new_key("ECDSAP256"), pki.new_key("ECDSAP256")
    cert = pki.self_signed("upload.example.com", key)
    with pytest.raises(Rejected, match="same key pair"):
        await systems.pexip.create("tls_certificate", {"certificate": cert, "private_key": pki.key_pem(other)})
    created = await systems.pexip.create("tls_certificate", {"certificate": cert, "private_key": pki.key_pem(key)})
    shown = await systems.pexip.get(created.uri)
    assert shown["subject_name"] == "upload.example.com" and "private_key" not in shown


async def test_ca_certificate_takes_one_pem(systems: Systems) -> None:
    """A trusted CA upload holds one certificate; a bundle is refused."""
    [root] = await systems.ca.chain()
    created = await systems.pexip.create("ca_certificate", {"certificate": root})
    assert (await systems.pexip.get(created.uri))["subject_name"].endswith("simulated root CA")
    with pytest.raises(Rejected, match='"certificate"'):
        await systems.pexip.create("ca_certificate", {"certificate": root + root})


async def _worker(systems: Systems, conf: NodeSpec, location: str) -> Created:
    return await systems.pexip.create(
        "worker_vm",
        {
            "name": conf.name,
            "hostname": conf.hostname,
            "address": conf.address,
            "netmask": conf.netmask,
            "gateway": conf.gateway,
            "system_location": location,
            "password": "ssh-pass-word",
        },
    )


async def test_worker_vm_returns_its_bootstrap_and_syncs_once_provisioned(
    systems: Systems, world: SimWorld, deployment: Deployment
) -> None:
    """A worker POST returns the bootstrap file as bytes; status says SYNCED only once the node took that file."""
    api, conf = systems.pexip, deployment.conferencing[0]
    location = await api.create("system_location", {"name": "sim-east"})
    created = await _worker(systems, conf, location.uri)
    body = json.loads(created.body)
    assert isinstance(created.body, bytes) and body["node_config"]["name"] == conf.name
    assert body["management_node"]["address"] == deployment.management.address
    assert b"ssh-pass-word" not in created.body and "ssh-pass-word" not in repr(created)
    [status] = await api.status("worker_vm")
    assert (status["name"], status["sync_status"]) == (conf.name, "NOT_CONNECTED")
    await deploy_vm(systems, deployment, conf)
    [status] = await api.status("worker_vm")
    assert status["sync_status"] == "NOT_CONNECTED"  # running and locked, but it never got its file
    assert systems.provisioning is not None
    await systems.provisioning.upload_bootstrap(conf, created.body)
    [status] = await api.status("worker_vm")
    assert status["sync_status"] == "SYNCED"
    assert world.effects_summary()[conf.name]["api_create"] == 1  # the worker, against its node


async def test_a_node_with_another_workers_file_never_syncs(systems: Systems, deployment: Deployment) -> None:
    """The file of a deleted worker_vm does not make the re-created one sync: each POST issues a new file."""
    api, conf = systems.pexip, deployment.conferencing[0]
    location = await api.create("system_location", {"name": "sim-east"})
    old = await _worker(systems, conf, location.uri)
    await api.delete(old.uri)
    new = await _worker(systems, conf, location.uri)
    assert new.body != old.body
    await deploy_vm(systems, deployment, conf)
    assert systems.provisioning is not None
    await systems.provisioning.upload_bootstrap(conf, old.body)
    [status] = await api.status("worker_vm")
    assert status["sync_status"] == "NOT_CONNECTED"
    with pytest.raises(Rejected, match="already took another bootstrap file"):
        await systems.provisioning.upload_bootstrap(conf, new.body)
    await systems.provisioning.upload_bootstrap(conf, old.body)  # the same file again: a replay, accepted


async def test_provisioning_interface_answers_only_once_the_vm_runs(systems: Systems, deployment: Deployment) -> None:
    """Before the node's VM runs, its tcp/8443 does not answer (retryable); a Management Node has none."""
    conf = deployment.conferencing[0]
    assert systems.provisioning is not None
    with pytest.raises(Unreachable, match="8443"):
        await systems.provisioning.upload_bootstrap(conf, b"{}")
    with pytest.raises(Rejected, match="no provisioning interface"):
        await systems.provisioning.upload_bootstrap(deployment.management, b"{}")


async def test_worker_vm_post_needs_a_password(systems: Systems, deployment: Deployment) -> None:
    """A worker_vm POST without a password is refused with the field, as Terraform's required field says."""
    conf = deployment.conferencing[0]
    location = await systems.pexip.create("system_location", {"name": "sim-east"})
    with pytest.raises(Rejected, match='"password"'):
        await systems.pexip.create(
            "worker_vm",
            {
                "name": conf.name,
                "hostname": conf.hostname,
                "address": conf.address,
                "netmask": conf.netmask,
                "gateway": conf.gateway,
                "system_location": location.uri,
            },
        )


async def test_effects_on_platform_resources_name_the_manager(
    systems: Systems, world: SimWorld, deployment: Deployment
) -> None:
    """role/dns/global changes are recorded against the Management Node."""
    await systems.pexip.create("role", {"name": "Auditor"})
    await systems.pexip.patch(GLOBAL, {"enable_chat": False})
    dns = await systems.pexip.create("dns_server", {"address": "10.0.0.2"})
    await systems.pexip.delete(dns.uri)
    kinds = world.effects_summary()[deployment.management.name]
    assert (kinds["role_create"], kinds["api_patch"], kinds["api_create"], kinds["api_delete"]) == (1, 1, 1, 1)


async def test_transient_fault_changes_nothing(tmp_path: Path, deployment: Deployment) -> None:
    """A transient fault raises Unreachable before the call changes anything."""
    w = SimWorld.open(tmp_path / "faulty.sqlite", faults="transient=1")
    try:
        with pytest.raises(Unreachable, match="injected transient fault"):
            await SimPexipApi(w, deployment, SimDirectory(w, deployment)).create("dns_server", {"address": "10.0.0.2"})
        assert w.effects_summary() == {}
    finally:
        w.close()


# --- who can log in -------------------------------------------------------------------


async def test_guide_order_keeps_a_login_at_every_step(systems: Systems, deployment: Deployment) -> None:
    """LDAP+LOCAL, mappings, client certificate, then LDAP only: verified logins all along."""
    assert await systems.pexip.verify_login(use_client_cert=False) == "local admin"
    await harden_manager(systems, deployment)
    roles = await authenticate_ldap(systems, deployment)
    assert roles == "Auditor,Read-only,Read-write"
    assert (await systems.pexip.get(AUTH))["source"] == "LDAP"
    with pytest.raises(Rejected, match="client certificate is required"):
        await systems.pexip.verify_login(use_client_cert=False)


async def test_careless_order_locks_everyone_out(systems: Systems, deployment: Deployment) -> None:
    """LDAP only with client certificates but no role mapping: verify_login warns, then calls fail."""
    api, ldap = systems.pexip, deployment.ldap
    assert ldap.bind_password is not None
    await api.patch(
        AUTH,
        {
            "source": "LDAP+LOCAL",
            "ldap_server": ldap.server,
            "ldap_base_dn": ldap.base_dn,
            "ldap_bind_username": ldap.bind_username,
            "ldap_bind_password": ldap.bind_password.reveal(),
        },
    )
    with pytest.raises(Rejected, match="no ldap_role maps a group"):
        await api.verify_login(use_client_cert=False)  # the check a careful engine makes first
    await api.patch(AUTH, {"client_certificate": "CN"})  # still reachable: the change applies
    with pytest.raises(Rejected, match="locked out"):
        await api.patch(AUTH, {"source": "LDAP"})
    with pytest.raises(Rejected, match="locked out"):
        await api.list_objects("dns_server")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ldap_bind_password": "wrong-password"}, "ldap_bind_password"),  # the bind would fail
        ({"ldap_server": "elsewhere.example.com"}, "ldap_server"),  # no directory there
        ({"ldap_base_dn": "dc=other"}, "ldap_base_dn"),  # user not found under that base
    ],
)
async def test_ldap_login_names_what_is_wrong(
    systems: Systems, deployment: Deployment, change: dict, reason: str
) -> None:
    """An LDAP login that cannot work says which authentication setting breaks it."""
    await harden_manager(systems, deployment)
    await authenticate_ldap(systems, deployment)
    await systems.pexip.patch(AUTH, {"source": "LDAP+LOCAL", "client_certificate": "NO"})
    await systems.pexip.patch(AUTH, change)  # the local admin still gets in
    with pytest.raises(Rejected, match=reason):
        await systems.pexip.verify_login(use_client_cert=True)


async def test_wrong_admin_password_is_not_a_local_login(
    world: SimWorld, deployment: Deployment, tmp_path: Path
) -> None:
    """If the API password is not the one the installation wizard set, every call is locked out."""
    systems = make_systems(world, deployment)
    await deploy_vm(systems, deployment, deployment.management)
    await systems.console.installation_wizard(
        deployment.management, "not-the-configured-one", deployment.policy.installation_wizard.settings()
    )
    with pytest.raises(Rejected, match="locked out.*installation wizard set"):
        await systems.pexip.get(GLOBAL)


def _directory_with(world: SimWorld, deployment: Deployment, groups: tuple[str, ...]) -> SimDirectory:
    """A directory whose verify user is in only the groups of the role mappings named ``groups``."""
    mappings = tuple(m for m in deployment.ldap.role_mappings if m.name in groups)
    ldap = dataclasses.replace(deployment.ldap, role_mappings=mappings)
    return SimDirectory(world, dataclasses.replace(deployment, ldap=ldap))


@pytest.mark.parametrize(
    ("groups", "roles"),
    [
        (
            ("Pexip Read-only", "Pexip Read-write", "Pexip Auditor"),
            "Auditor,Read-only,Read-write",
        ),  # the deployment's own directory
        (("Pexip Auditor",), "Auditor"),  # a directory that holds only the auditors' group
        (("Pexip Read-only", "Pexip Auditor"), "Auditor,Read-only"),  # two of the three groups
    ],
)
async def test_ldap_login_follows_the_directory_it_is_handed(
    world: SimWorld, systems: Systems, deployment: Deployment, groups: tuple[str, ...], roles: str
) -> None:
    """The LDAP roles granted are those of the groups the handed directory puts the user in, not the config's."""
    await harden_manager(systems, deployment)
    await authenticate_ldap(systems, deployment)
    api = SimPexipApi(world, deployment, _directory_with(world, deployment, groups))
    assert await api.verify_login(use_client_cert=True) == roles


async def test_a_directory_without_the_user_locks_ldap_logins_out(
    world: SimWorld, systems: Systems, deployment: Deployment
) -> None:
    """With LDAP the only source, a directory that does not know the verify user leaves no login."""
    await harden_manager(systems, deployment)
    await authenticate_ldap(systems, deployment)
    api = SimPexipApi(world, deployment, _directory_with(world, deployment, ()))
    with pytest.raises(Rejected, match="is not in the directory"):
        await api.verify_login(use_client_cert=True)
    with pytest.raises(Rejected, match="locked out.*is not in the directory"):
        await api.get(GLOBAL)
    assert await systems.pexip.verify_login(use_client_cert=True)  # the deployment's directory still grants


async def test_an_unreachable_directory_is_not_a_lock_out(
    world: SimWorld, systems: Systems, deployment: Deployment, tmp_path: Path
) -> None:
    """A directory that does not answer makes the call Unreachable (retryable), not a lock-out that sticks."""
    await harden_manager(systems, deployment)
    await authenticate_ldap(systems, deployment)
    ldap_world = SimWorld.open(tmp_path / "ldap.sqlite", faults="transient=1")
    try:
        api = SimPexipApi(world, deployment, SimDirectory(ldap_world, deployment))
        with pytest.raises(Unreachable, match="ldap: search groups of"):
            await api.get(GLOBAL)
        ldap_world.faults = FaultPlan()  # the directory answers again
        assert (await api.get(GLOBAL))["resource_uri"] == GLOBAL
    finally:
        ldap_world.close()
