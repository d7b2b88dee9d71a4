"""load_policy: the packaged policy, its schema checks and the rules for overrides."""

from __future__ import annotations

import dataclasses

import pytest

from config.errors import ConfigError
from config.load import POLICY_PATH, load_policy
from config.model import Policy


def test_packaged_policy_loads_with_every_section():
    """The default policy file is found, valid, and fills every Policy field with its section's dataclass."""
    policy = load_policy()
    assert POLICY_PATH.name == "secure-mode-policy.toml" and POLICY_PATH.is_file()
    for f in dataclasses.fields(Policy):
        assert dataclasses.is_dataclass(getattr(policy, f.name)), f.name
    assert policy.security_wizard.enable_tls_1_0 is False
    assert policy.retry.max_backoff_s == 30.0 and isinstance(policy.retry.max_backoff_s, float)


def test_a_loaded_policy_cannot_be_changed():
    """A loaded policy is frozen: a consumer cannot change what the next one reads."""
    first = load_policy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.location.mtu = 9000  # type: ignore[misc]
    assert load_policy().location.mtu == 1400


@pytest.mark.parametrize(
    "overrides",
    [
        {
            "security_wizard": {"sip_udp_listen_port": 5070},
            "global_settings": {"management_session_timeout": 15},
        },  # nested
        {"security_wizard.sip_udp_listen_port": 5070, "global_settings.management_session_timeout": 15},  # dotted
    ],
)
def test_customizable_overrides_apply(overrides):
    """Customizable values change, whether the overrides are nested or dotted; the rest stays."""
    policy = load_policy(overrides=overrides)
    assert policy.security_wizard.sip_udp_listen_port == 5070
    assert policy.global_settings.management_session_timeout == 15
    assert policy.security_wizard.sip_tcp_listen_port == 5060


def test_float_override_accepts_an_integer():
    """A whole number given for a seconds value is stored as a float."""
    assert load_policy(overrides={"retry.initial_backoff_s": 2}).retry.initial_backoff_s == 2.0


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        (
            {"security_wizard.enable_tls_1_0": True},
            "security_wizard.enable_tls_1_0",
            "fixed by the secure-mode guide",
        ),  # the guide fixes it
        (
            {"snmp.forbidden_community": "private"},
            "snmp.forbidden_community",
            "nothing may be customized",
        ),  # a section with nothing to customize
        (
            {"security_wizard.customizable": []},
            "security_wizard.customizable",
            "unknown policy key",
        ),  # the list itself cannot be overridden
        (
            {"security_wizard.enable_tls_1_1": False},
            "security_wizard.enable_tls_1_1",
            "known keys of [security_wizard]",
        ),  # unknown key
        ({"firewall.open": True}, "firewall.open", "known sections"),  # unknown section
        (
            {"security_wizard.sip_tls_listen_port": "5061"},
            "security_wizard.sip_tls_listen_port",
            "expected an integer",
        ),  # wrong type
        (
            {"security_wizard.sip_tls_listen_port": True},
            "security_wizard.sip_tls_listen_port",
            "expected an integer",
        ),  # a boolean is no port
        (
            {"security_wizard.sip_udp_listen_port": 70000},
            "security_wizard.sip_udp_listen_port",
            "1..65535",
        ),  # not a port
        (
            {"security_wizard.active_management_web_sessions": 0},
            "security_wizard.active_management_web_sessions",
            "unlimited",
        ),  # 0 means no limit
        (
            {"security_wizard.active_per_user_management_web_sessions": 500},
            "security_wizard.active_per_user_management_web_sessions",
            "cannot exceed",
        ),  # per user above total
        (
            {"global_settings.management_session_timeout": 2000},
            "global_settings.management_session_timeout",
            "5..1440",
        ),  # API range
        ({"location.mtu": 9000}, "location.mtu", "512..1500"),  # API range
        (
            {"retry.initial_backoff_s": 60, "retry.max_backoff_s": 10},
            "retry.max_backoff_s",
            "smaller than initial_backoff_s",
        ),  # inverted backoff
    ],
)
def test_bad_override_is_refused(overrides, field, fragment):
    """Each bad override raises ConfigError naming the key and why."""
    with pytest.raises(ConfigError) as caught:
        load_policy(overrides=overrides)
    messages = [m for f, m in caught.value.problems if f == field]
    assert messages and fragment in messages[0], str(caught.value)


@pytest.mark.parametrize(
    ("old", "new", "field", "fragment"),
    [
        ("[bios]", "[bois]", "bois", "unknown policy section"),  # a misspelt section (and so bios is missing)
        ("[bios]", "[bois]", "bios", "missing policy section"),  # the section it should have been
        ("mtu = 1400", "mtu = 1400\nmtus = 1400", "location.mtus", "unknown policy key"),  # an extra key
        ("mtu = 1400\n", "", "location.mtu", "missing policy key"),  # a key removed
        (
            "enable_tls_1_0 = false",
            'enable_tls_1_0 = "no"',
            "security_wizard.enable_tls_1_0",
            "expected a boolean",
        ),  # wrong type
        (
            'edit = ["Read-only", "Read-write"]',
            'edit = "Read-only"',
            "roles.edit",
            "an array of strings",
        ),  # a string for a list
        (
            'customizable = ["media_qos", "signalling_qos", "mtu"]',
            'customizable = ["media_qos", "dscp"]',
            "location.customizable",
            "names no key",
        ),  # customizable names nothing
        (
            "management_session_timeout = 10",
            "management_session_timeout = 1",
            "global_settings.management_session_timeout",
            "5..1440",
        ),  # out of range in the file
    ],
)
def test_broken_policy_file_is_refused(tmp_path, old, new, field, fragment):
    """A hand-edited policy with a schema mistake raises ConfigError naming the section/key."""
    text = POLICY_PATH.read_text()
    assert old in text
    path = tmp_path / "policy.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    messages = [m for f, m in caught.value.problems if f == field]
    assert messages and fragment in messages[0], str(caught.value)


def test_missing_policy_file_is_refused(tmp_path):
    """A policy path that does not exist raises ConfigError naming it."""
    with pytest.raises(ConfigError) as caught:
        load_policy(tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in str(caught.value)
