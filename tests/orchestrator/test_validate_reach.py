"""`validate`'s reachability check connects where the clients connect: the Management API at its address."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.load import simulated_deployment
from config.model import Deployment
from orchestrator._validation import unreachable


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def _real_api(tmp_path: Path, url: str, address: str | None) -> Deployment:
    d = simulated_deployment(2, tmp_path)
    return dataclasses.replace(d, pexip_api=dataclasses.replace(d.pexip_api, mode="real", url=url, address=address))


def test_the_management_api_is_reached_at_its_address_not_the_urls_name(tmp_path: Path, listener: int) -> None:
    """URL host pexmgr.invalid (the TLS name, not in DNS), address 127.0.0.1 listening: reachable."""
    d = _real_api(tmp_path, f"https://pexmgr.invalid:{listener}", "127.0.0.1")
    assert unreachable(d) == []


def test_an_unreachable_address_is_named_with_its_field(tmp_path: Path, listener: int) -> None:
    """The same with nothing listening at the address's port: one problem on pexip_api.url naming the address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    d = _real_api(tmp_path, f"https://pexmgr.invalid:{closed}", "127.0.0.1")
    ((field, message),) = unreachable(d)
    assert field == "pexip_api.url" and f"cannot connect to 127.0.0.1:{closed}" in message


def test_without_an_address_the_management_nodes_is_used(tmp_path: Path, listener: int) -> None:
    """No pexip_api.address: the connection goes to management.address, as the client's."""
    d = _real_api(tmp_path, f"https://pexmgr.invalid:{listener}", None)
    d = dataclasses.replace(d, management=dataclasses.replace(d.management, address="127.0.0.1"))
    assert unreachable(d) == []
