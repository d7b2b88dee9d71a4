"""The NodeProvisioning contract: a Conferencing Node takes its one bootstrap file, once, and syncs."""

from __future__ import annotations

import logging

import pytest
from _contract import ProvisioningCase
from _sim_factory import worker_vm_fields

from adapters.base import NodeProvisioning
from config.errors import Rejected, Unreachable
from config.model import NodeSpec

MARKER = "PROVISIONING-SECRET-7c1e"  # stands for the password hashes a bootstrap file carries


async def _issued(case: ProvisioningCase, node: NodeSpec) -> bytes:
    """The bootstrap file the Manager issues for ``node``'s new worker_vm."""
    api = case.systems.pexip
    found = await api.list_objects("system_location", name=node.location)
    location = found[0]["resource_uri"] if found else (await api.create("system_location", {"name": node.location})).uri
    created = await api.create("worker_vm", worker_vm_fields(node, location))
    return created.body


async def _sync(case: ProvisioningCase, node: NodeSpec) -> str:
    [status] = [s for s in await case.systems.pexip.status("worker_vm") if s["name"] == node.name]
    return str(status["sync_status"])


def test_is_a_node_provisioning(provisioning_case: ProvisioningCase) -> None:
    """The implementation satisfies the NodeProvisioning protocol."""
    assert isinstance(provisioning_case.provisioning, NodeProvisioning)


async def test_a_node_whose_vm_does_not_run_is_unreachable(provisioning_case: ProvisioningCase) -> None:
    """Before its VM runs, a node's provisioning interface does not answer: Unreachable, retryable."""
    node = provisioning_case.deployment.conferencing[0]
    with pytest.raises(Unreachable) as caught:
        await provisioning_case.provisioning.upload_bootstrap(node, b'{"node": 1}')
    assert caught.value.retryable and node.name in str(caught.value)


async def test_the_issued_file_makes_the_node_sync(provisioning_case: ProvisioningCase) -> None:
    """Once the node took the file its worker_vm was issued, the Manager reports it SYNCED."""
    case, node = provisioning_case, provisioning_case.deployment.conferencing[0]
    body = await _issued(case, node)
    await case.boot(node.name)
    assert await _sync(case, node) == "NOT_CONNECTED"
    await case.provisioning.upload_bootstrap(node, body)
    assert await _sync(case, node) == "SYNCED"


async def test_the_same_file_again_is_a_replay(provisioning_case: ProvisioningCase) -> None:
    """Uploading the very file a node already took (a replay after a crash) is accepted and changes nothing."""
    case, node = provisioning_case, provisioning_case.deployment.conferencing[0]
    body = await _issued(case, node)
    await case.boot(node.name)
    await case.provisioning.upload_bootstrap(node, body)
    await case.provisioning.upload_bootstrap(node, body)
    assert await _sync(case, node) == "SYNCED"


async def test_another_file_is_refused_and_the_first_one_kept(provisioning_case: ProvisioningCase) -> None:
    """A node that took one file refuses another (not retryable: its VM must be redeployed) and keeps the first."""
    case, node = provisioning_case, provisioning_case.deployment.conferencing[0]
    body = await _issued(case, node)
    await case.boot(node.name)
    await case.provisioning.upload_bootstrap(node, body)
    with pytest.raises(Rejected, match="another bootstrap file") as caught:
        await case.provisioning.upload_bootstrap(node, b'{"another": "file"}')
    assert not caught.value.retryable and "redeploy" in str(caught.value)
    assert await _sync(case, node) == "SYNCED"
    await case.provisioning.upload_bootstrap(node, body)  # the first one is still the node's


async def test_each_node_takes_its_own_file(provisioning_case: ProvisioningCase) -> None:
    """Two nodes are provisioned independently: one node's file does not provision the other."""
    case = provisioning_case
    first, second = case.deployment.conferencing[:2]
    body = await _issued(case, first)
    await _issued(case, second)
    await case.boot(first.name)
    await case.boot(second.name)
    await case.provisioning.upload_bootstrap(first, body)
    assert (await _sync(case, first), await _sync(case, second)) == ("SYNCED", "NOT_CONNECTED")


@pytest.mark.parametrize(
    ("which", "body", "match"),
    [
        ("management", b'{"node": 1}', "no provisioning interface"),  # only Conferencing Nodes have one
        ("conferencing", b"", "empty"),  # an empty file is never a bootstrap file
    ],
)
async def test_refusals(provisioning_case: ProvisioningCase, which: str, body: bytes, match: str) -> None:
    """A Management Node and an empty file are refused, not retried."""
    case = provisioning_case
    node = case.deployment.management if which == "management" else case.deployment.conferencing[0]
    await _issued(case, case.deployment.conferencing[0])
    await case.boot(case.deployment.conferencing[0].name)
    with pytest.raises(Rejected, match=match) as caught:
        await case.provisioning.upload_bootstrap(node, body)
    assert not caught.value.retryable


async def test_the_file_never_reaches_a_log_or_an_error(
    provisioning_case: ProvisioningCase, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither a successful upload nor a refusal puts any of the file in the logs or the error's text."""
    case, node = provisioning_case, provisioning_case.deployment.conferencing[0]
    caplog.set_level(logging.DEBUG)
    await _issued(case, node)
    await case.boot(node.name)
    await case.provisioning.upload_bootstrap(node, f'{{"hash": "{MARKER}"}}'.encode())
    with pytest.raises(Rejected) as caught:
        await case.provisioning.upload_bootstrap(node, f'{{"other": "{MARKER}-2"}}'.encode())
    assert MARKER not in str(caught.value) and MARKER not in repr(caught.value)
    assert MARKER not in caplog.text
