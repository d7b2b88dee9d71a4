"""The [console] section of the real SSH console (issue #8): its admin password and its host key pin."""

from __future__ import annotations

import pytest

from config.errors import ConfigError
from config.load import load_deployment
from tests.config.conftest import DELETE

FINGERPRINT = "SHA256:Mkcnv4JJjZs4oXVrUPtlSbEd+T5Fcqb9RgJzGmZvw3U"


def _problems(write_config, edits) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_deployment(write_config(edits), check_secrets=False)
    return dict(caught.value.problems)


@pytest.mark.parametrize(
    ("edits", "field", "fragment"),
    [
        ({"console.admin_password": DELETE}, "console.admin_password", "env:NAME or file:PATH"),
        ({"console.admin_password": "inline-Passw0rd"}, "console.admin_password", "env:"),
        ({"console.known_hosts": DELETE}, "console.host_key_fingerprint", "trust_on_first_use = true"),
        ({"console.host_key_fingerprint": "SHA256:short"}, "console.host_key_fingerprint", "ssh-keygen -lf"),
        ({"console.host_key_fingerprint": "MD5:aa:bb"}, "console.host_key_fingerprint", "bad fingerprint format"),
        ({"console.trust_on_first_use": True}, "console.trust_on_first_use", "while the host key is pinned"),
        ({"console.address": " "}, "console.address", "empty"),
        (
            {"pexip_api.tls_fingerprint": "sha256:" + ":".join(["AB"] * 32), "pexip_api.trust_on_first_use": True},
            "pexip_api.trust_on_first_use",
            "while pexip_api.tls_fingerprint pins",
        ),
    ],
)
def test_bad_console_fields_are_named(write_config, edits, field, fragment) -> None:
    """Each bad [console] value: a ConfigError naming the field and the fix."""
    problems = _problems(write_config, edits)
    assert field in problems, problems
    assert fragment in problems[field]


@pytest.mark.parametrize(
    "edits",
    [
        {"console.known_hosts": DELETE, "console.host_key_fingerprint": FINGERPRINT},
        {"console.known_hosts": DELETE, "console.trust_on_first_use": True},
        {"console.address": "10.10.1.10"},
    ],
)
def test_each_way_of_pinning_is_accepted(write_config, edits) -> None:
    """A fingerprint, or (explicitly) trust on first use, instead of known_hosts: no console problem."""
    try:
        load_deployment(write_config(edits), check_secrets=False)
    except ConfigError as exc:
        assert not [f for f, _ in exc.problems if f.startswith("console.")], exc.problems
