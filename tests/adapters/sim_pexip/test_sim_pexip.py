"""The simulated Management API: resources, validation, secrets, worker VMs and the effects it records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _sim_factory import (
    AUTH,
    CONFIG,
    GLOBAL,
    WORKER_PASSWORD,
    deploy_vm,
    worker_vm_fields,
)

from adapters import PexipApi, Systems
from adapters.base import Created
from adapters.sim import SimDirectory, SimPexipApi, SimWorld
from config.errors import Rejected, Unreachable
from config.model import Deployment, NodeSpec


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
        assert all(p["resource_uri"].startswith(CONFIG + "permission/") for p in found["permissions"])
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


async def test_list_filters_are_checked_per_resource_every_time(systems: Systems) -> None:
    """A filter accepted on one resource is still refused on another without that field, and a refused one is
    refused again (the accepted filter names are remembered, never the refused ones)."""
    api = systems.pexip
    await api.create("dns_server", {"address": "10.0.0.2"})
    assert len(await api.list_objects("dns_server", address="10.0.0.2")) == 1
    for _ in range(2):
        with pytest.raises(Rejected, match="400 cannot filter on 'address'"):
            await api.list_objects("system_location", address="10.0.0.2")
        with pytest.raises(Rejected, match="supported forms are FIELD"):
            await api.list_objects("dns_server", address__regex="10")


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
        ("create", "role", {"name": "r", "permissions": [CONFIG + "permission/999/"]}, "permissions"),  # FK must exist
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
            await api.patch(CONFIG + target, fields)
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
            await api.delete(CONFIG + target)
        else:
            await api.patch(CONFIG + target, {"name": "x"})


async def test_write_only_fields_are_never_returned(systems: Systems, world: SimWorld) -> None:
    """Passwords and keys are accepted, never shown, and never stored in clear."""
    api = systems.pexip
    ntp = await api.create("ntp_server", {"address": "10.0.0.4", "key_id": 7, "key": "ntp-key-value-1"})
    await api.patch(
        CONFIG + "management_vm/2/",
        {
            "snmp_mode": "AUTHPRIV",
            "snmp_privacy_password": "priv-secret-2",
            "snmp_authentication_password": "auth-secret-3",
        },
    )
    await api.patch(AUTH, {"ldap_bind_password": "bind-secret-4"})
    shown = [await api.get(ntp.uri), await api.get(CONFIG + "management_vm/2/"), await api.get(AUTH)]
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
    await api.patch(CONFIG + "management_vm/2/", {"dns_servers": [dns.uri]})
    manager = await api.get(CONFIG + "management_vm/2/")
    assert [(d["address"], d["resource_uri"]) for d in manager["dns_servers"]] == [("10.0.0.2", dns.uri)]


async def test_unique_names(systems: Systems) -> None:
    """A second role of the same name is Rejected."""
    await systems.pexip.create("role", {"name": "Auditor"})
    with pytest.raises(Rejected, match='"name"'):
        await systems.pexip.create("role", {"name": "Auditor"})


async def _worker(systems: Systems, conf: NodeSpec, location: str) -> Created:
    return await systems.pexip.create("worker_vm", worker_vm_fields(conf, location))


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
    assert WORKER_PASSWORD.encode() not in created.body and WORKER_PASSWORD not in repr(created)
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
    fields = worker_vm_fields(conf, location.uri)
    del fields["password"]
    with pytest.raises(Rejected, match='"password"'):
        await systems.pexip.create("worker_vm", fields)


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
