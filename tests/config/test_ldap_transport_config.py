"""``ldap.transport``: StartTLS by default, ldaps on 636 by default, plain refused at load under the guide's floor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.load import load_deployment
from tests.config.test_config_load import MESSAGE, problem_line


@pytest.mark.parametrize(
    ("edits", "transport", "port"),
    [
        ({}, "starttls", 389),  # the example names no transport: StartTLS on 389
        ({"ldap.transport": "ldaps", "ldap.port": "<delete>"}, "ldaps", 636),  # ldaps: 636 unless given
        ({"ldap.transport": "ldaps", "ldap.port": 3269}, "ldaps", 3269),  # a given port stays
    ],
)
def test_the_transport_and_its_default_port(
    write_config: Callable[..., Path], edits: dict[str, object], transport: str, port: int
) -> None:
    """The transport read, and the port that goes with it when none is given."""
    d = load_deployment(write_config(edits), check_secrets=False)
    assert (d.ldap.transport, d.ldap.port) == (transport, port)


@pytest.mark.parametrize(
    ("transport", "fragment"),
    [
        ("plain", "without TLS, which the policy forbids"),  # the guide's floor: LDAP only over TLS
        ("tls", "use one of: starttls, ldaps, plain"),  # not a transport
    ],
)
def test_a_plain_or_unknown_transport_is_refused_at_load(
    write_config: Callable[..., Path], transport: str, fragment: str
) -> None:
    """ConfigError naming ldap.transport, the value and the fix."""
    with pytest.raises(ConfigError) as caught:
        load_deployment(write_config({"ldap.transport": transport}), check_secrets=False)
    line = problem_line(caught.value, "ldap.transport")
    assert fragment in line and MESSAGE.match(line), line
