"""The PexipApi contract: what every Management API client shows of a freshly installed Management Node."""

from __future__ import annotations

import pytest
from _contract import PexipCase
from _sim_factory import authenticate_ldap, worker_vm_fields

from adapters.base import PexipApi, Systems
from config.errors import Rejected

BASE = "/api/admin/configuration/v1/"
GLOBAL = BASE + "global/1/"
AUTH = BASE + "authentication/1/"


async def _location(case: PexipCase) -> str:
    return (await case.api.create("system_location", {"name": "contract-location"})).uri


async def _worker(case: PexipCase, index: int, location: str) -> str:
    node = case.deployment.conferencing[index]
    created = await case.api.create("worker_vm", worker_vm_fields(node, location))
    return created.uri


def test_is_a_pexip_api(pexip_case: PexipCase) -> None:
    """The implementation satisfies the PexipApi protocol."""
    assert isinstance(pexip_case.api, PexipApi)


async def test_create_then_list_and_get(pexip_case: PexipCase) -> None:
    """A created object has a URI of its resource, is listed, filtered exactly, and read back by URI."""
    api = pexip_case.api
    first = await api.create("dns_server", {"address": "10.0.0.2"})
    second = await api.create("dns_server", {"address": "10.0.0.3", "description": "second"})
    assert first.uri.startswith(BASE + "dns_server/") and first.uri.endswith("/") and first.uri != second.uri
    shown = await api.get(first.uri)
    assert (shown["address"], shown["resource_uri"]) == ("10.0.0.2", first.uri)
    assert [d["resource_uri"] for d in await api.list_objects("dns_server")] == [first.uri, second.uri]
    assert [d["resource_uri"] for d in await api.list_objects("dns_server", address="10.0.0.3")] == [second.uri]
    assert await api.list_objects("dns_server", address="10.0.0.9") == []


async def test_patch_then_get_shows_it(pexip_case: PexipCase) -> None:
    """A PATCH changes the fields it names and no other."""
    api = pexip_case.api
    created = await api.create("dns_server", {"address": "10.0.0.2", "description": "before"})
    await api.patch(created.uri, {"description": "after"})
    shown = await api.get(created.uri)
    assert (shown["address"], shown["description"]) == ("10.0.0.2", "after")


async def test_delete(pexip_case: PexipCase) -> None:
    """A deleted object is no longer listed and reading it is Rejected (404)."""
    api = pexip_case.api
    kept = await api.create("dns_server", {"address": "10.0.0.2"})
    gone = await api.create("dns_server", {"address": "10.0.0.3"})
    await api.delete(gone.uri)
    assert [d["resource_uri"] for d in await api.list_objects("dns_server")] == [kept.uri]
    with pytest.raises(Rejected, match="404"):
        await api.get(gone.uri)


async def test_singletons_are_read_and_patched_never_created_or_deleted(pexip_case: PexipCase) -> None:
    """global/1 and authentication/1 exist from the start, take PATCHes, and refuse POST and DELETE."""
    api = pexip_case.api
    assert (await api.get(GLOBAL))["resource_uri"] == GLOBAL
    assert (await api.get(AUTH))["resource_uri"] == AUTH
    await api.patch(GLOBAL, {"enable_chat": False})
    assert (await api.get(GLOBAL))["enable_chat"] is False
    for resource in ("global", "authentication"):
        with pytest.raises(Rejected, match="405"):
            await api.create(resource, {})
    for uri in (GLOBAL, AUTH):
        with pytest.raises(Rejected, match="405"):
            await api.delete(uri)
    assert (await api.get(AUTH))["source"] == "LOCAL"


async def test_write_only_secrets_are_never_returned(pexip_case: PexipCase) -> None:
    """Keys and passwords are accepted but neither get nor list_objects shows them."""
    api = pexip_case.api
    ntp = await api.create("ntp_server", {"address": "10.0.0.4", "key_id": 7, "key": "ntp-key-value-1"})
    await api.patch(AUTH, {"ldap_bind_password": "bind-secret-4"})
    shown = [await api.get(ntp.uri), *await api.list_objects("ntp_server"), await api.get(AUTH)]
    assert shown[0]["key_id"] == 7
    for obj in shown:
        assert not {"key", "ldap_bind_password"} & set(obj)
        assert "ntp-key-value-1" not in str(obj) and "bind-secret-4" not in str(obj)


@pytest.mark.parametrize(
    ("verb", "target", "fields", "field"),
    [
        ("patch", "global/1/", {"management_qos": 64}, "management_qos"),  # DSCP is 0..63
        ("patch", "global/1/", {"enable_chatt": False}, "enable_chatt"),  # no such field
        ("create", "dns_server", {"address": "dns.example.com"}, "address"),  # an IP address only
        ("create", "ntp_server", {"address": "10.0.0.4", "key_id": 0}, "key_id"),  # 1..65535
    ],
)
async def test_refusals_name_the_field(
    pexip_case: PexipCase, verb: str, target: str, fields: dict[str, object], field: str
) -> None:
    """A value the API refuses (400) is Rejected naming the field, and nothing changes."""
    api = pexip_case.api

    async def seen() -> object:
        return await api.get(GLOBAL) if verb == "patch" else await api.list_objects(target)

    before = await seen()
    with pytest.raises(Rejected, match=field):
        if verb == "patch":
            await api.patch(BASE + target, fields)
        else:
            await api.create(target, fields)
    assert await seen() == before


async def test_status_filters_by_name(pexip_case: PexipCase) -> None:
    """status() lists every worker's state, and name= narrows it to one node."""
    location = await _location(pexip_case)
    for i in (0, 1):
        await _worker(pexip_case, i, location)
    one, two = (n.name for n in pexip_case.deployment.conferencing[:2])
    every = await pexip_case.api.status("worker_vm")
    assert sorted(s["name"] for s in every) == sorted([one, two])
    assert all("sync_status" in s for s in every)
    [only] = await pexip_case.api.status("worker_vm", name=two)
    assert only["name"] == two
    assert await pexip_case.api.status("worker_vm", name="no-such-node") == []


async def test_the_local_admin_logs_in_on_a_fresh_manager(pexip_case: PexipCase) -> None:
    """verify_login as the local admin works; with a client certificate (no LDAP yet) it is Rejected."""
    assert await pexip_case.api.verify_login(use_client_cert=False) == "local admin"  # outside roles
    with pytest.raises(Rejected):
        await pexip_case.api.verify_login(use_client_cert=True)


async def test_ldap_then_certificate_logins_follow_the_authentication_settings(pexip_case: PexipCase) -> None:
    """Through LDAP+LOCAL, client certificates and LDAP alone every next login is proven; then a
    login without the certificate is refused and the certificate login still works."""
    api, deployment = pexip_case.api, pexip_case.deployment
    systems = Systems(vsphere=None, pexip=api, console=None, ca=None, directory=None)  # type: ignore[arg-type]
    assert await authenticate_ldap(systems, deployment)
    assert (await api.get(AUTH))["source"] == "LDAP"
    with pytest.raises(Rejected):
        await api.verify_login(use_client_cert=False)  # a certificate is required: no Basic login any more
    assert await api.verify_login(use_client_cert=True)


async def test_aclose_is_idempotent(pexip_case: PexipCase) -> None:
    """aclose after use, and again, raises nothing (the fixture closes a third time)."""
    await pexip_case.api.get(GLOBAL)
    await pexip_case.api.aclose()
    await pexip_case.api.aclose()


async def test_a_resource_schema_gives_its_valid_choices(pexip_case: PexipCase) -> None:
    """get('<resource>/schema/') is the resource's schema: the CSR generator's key types are read from it."""
    schema = await pexip_case.api.get(BASE + "certificate_signing_request/schema/")
    choices = schema["fields"]["private_key_type"]["valid_choices"]
    assert {"RSA2048", "RSA4096"} <= set(choices)
    with pytest.raises(Rejected):
        await pexip_case.api.get(BASE + "no_such_resource/schema/")
