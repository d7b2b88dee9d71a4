"""Which keys the redactor masks by name: the secret ones, not ordinary settings that merely sound sensitive."""

from __future__ import annotations

import pytest

from config.secrets import REDACTED, REDACTOR, SECRET_KEY_PATTERN, Secret


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("admin_password", True),  # the Manager's administrator password
        ("snmp_authentication_password", True),  # SNMPv3 auth: a password
        ("snmp_privacy_password", True),  # SNMPv3 privacy: a password
        ("passphrase", True),
        ("client_secret", True),
        ("private_key", True),
        ("signing_key", True),  # the journal's signing key reference
        ("key", True),
        ("api_token", True),
        ("snmp_community", False),  # the SNMP community: configured text, shown in plans
        ("community", False),  # snmp.community in the deployment file
        ("snmp_username", False),
        ("keyboard_layout", False),  # "key" only as a whole word at the end
        ("key_type", False),  # pki.key_type: rsa2048 ...
    ],
)
def test_the_key_pattern_masks_secret_keys_only(key: str, secret: bool) -> None:
    """A value under a secret key is masked whatever it holds; under any other key it is kept."""
    assert bool(SECRET_KEY_PATTERN.search(key)) is secret
    assert REDACTOR.scrub({key: "plain-value-1234"}) == {key: REDACTED if secret else "plain-value-1234"}


def test_a_secret_under_a_non_secret_key_is_still_masked_by_value() -> None:
    """The community key is not masked by name, but a registered secret value inside it still is."""
    REDACTOR.register("registered-Secret-c0ffee")
    scrubbed = REDACTOR.scrub({"snmp_community": "registered-Secret-c0ffee", "note": Secret("env:X")})
    assert scrubbed == {"snmp_community": REDACTED, "note": REDACTED}
