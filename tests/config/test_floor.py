"""The guide is a floor (issue #7, finding 2): no policy file weakens it; recommended values may differ, and say so."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from config._floor import floor_problems, guide_words, packaged_policy, policy_deviations
from config.errors import ConfigError
from config.load import POLICY_PATH, load_deployment
from orchestrator.cli import cli
from tests.config.conftest import DELETE, write_runnable_example

# Each case: the edit an attacker (or a careless copy) makes to the policy file, the field the
# refusal must name, and words of the guide it must quote.
WEAKENED = [
    (
        "enable_fips_140_2_compliance_mode = true",
        "enable_fips_140_2_compliance_mode = false",
        "security_wizard.enable_fips_140_2_compliance_mode",
        "Enable FIPS 140-2 compliance mode",
    ),  # FIPS off
    (
        "enable_tls_1_0 = false",
        "enable_tls_1_0 = true",
        "security_wizard.enable_tls_1_0",
        "Enable TLS 1.0 (YES) NO",
    ),  # TLS 1.0 on
    (
        "enable_ssh = false",
        "enable_ssh = true",
        "global_settings.enable_ssh",
        "Enable SSH Disable this option.",
    ),  # SSH on
    ("max = 4094", "max = 4095", "vlan.max", "must not use VLAN ID 4095"),  # VLAN 4095 in range
    ("forbidden = [4095]", "forbidden = []", "vlan.forbidden", "must not use VLAN ID 4095"),  # VLAN 4095 allowed
    (
        'forbidden_community = "public"',
        'forbidden_community = "nothing"',
        "snmp.forbidden_community",
        'something other than "public"',
    ),  # SNMP "public" allowed
    ('snmp_mode = "AUTHPRIV"', 'snmp_mode = "STANDARD"', "snmp.snmp_mode", "SNMPv3 read-only"),  # not SNMPv3 read-only
    (
        "ntp_key_required = true",
        "ntp_key_required = false",
        "network_services.ntp_key_required",
        "must include key authentication credentials",
    ),  # NTP without keys
    (
        "min_ntp_servers = 2",
        "min_ntp_servers = 1",
        "network_services.min_ntp_servers",
        "at least two NTP servers",
    ),  # one NTP
    (
        "security_wizard_approval = true",
        "security_wizard_approval = false",
        "gates.security_wizard_approval",
        "it cannot be re-enabled",
    ),  # no approval gate before the irreversible wizard
    (
        'final_source = "LDAP"',
        'final_source = "LDAP+LOCAL"',
        "authentication.final_source",
        "Set the Authentication source to LDAP database.",
    ),  # local logins kept
    (
        'client_certificate = "CN"',
        'client_certificate = "UPN"',
        "authentication.client_certificate",
        "Required (user identity in subject CN)",
    ),  # the primary profile's client certificate
]


def _policy_copy(tmp_path: Path, old: str, new: str, name: str = "site-policy.toml") -> Path:
    text = POLICY_PATH.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def _with_policy(config: Path, policy: str, extra: str = "") -> Path:
    text = config.read_text().replace('name = "secure-lab"', f'name = "secure-lab"\npolicy = "{policy}"', 1)
    config.write_text(text.replace("[policy]\n", f"[policy]\n{extra}", 1))
    return config


@pytest.mark.parametrize(("old", "new", "field", "words"), WEAKENED)
def test_a_policy_file_cannot_weaken_the_guide(write_config, tmp_path, old, new, field, words):
    """[deployment] policy naming a copy with a fixed value changed is refused, naming it and the guide's words."""
    _policy_copy(tmp_path, old, new)
    with pytest.raises(ConfigError) as caught:
        load_deployment(write_config({"deployment.policy": "site-policy.toml"}), check_secrets=False)
    lines = [m for f, m in caught.value.problems if f == field]
    assert lines, str(caught.value)
    assert "weakens the secure-mode guide" in lines[0] and words in lines[0] and "site-policy.toml" in lines[0]


def test_the_refusal_is_exit_2_through_the_cli_and_writes_nothing(example_secrets, monkeypatch):
    """`run` with a policy file that turns TLS 1.0 on exits 2 naming the value, and creates no journal or world."""
    config = _with_policy(write_runnable_example(example_secrets), "site-policy.toml")
    _policy_copy(example_secrets, "enable_tls_1_0 = false", "enable_tls_1_0 = true")
    monkeypatch.chdir(example_secrets)
    before = sorted(p for p in example_secrets.rglob("*"))
    result = CliRunner().invoke(cli, ["-c", str(config), "run"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "security_wizard.enable_tls_1_0: weakens the secure-mode guide" in result.stderr
    assert sorted(p for p in example_secrets.rglob("*")) == before


def test_widening_customizable_does_not_open_a_fixed_value(write_config, tmp_path):
    """A policy copy that lists a fixed key as customizable cannot then change it from [policy] either."""
    first = 'customizable = [\n    "sip_udp_listen_port",'
    _policy_copy(tmp_path, first, first.replace("[", '[\n    "enable_tls_1_0",'))
    edits = {"deployment.policy": "site-policy.toml", "policy.security_wizard.enable_tls_1_0": True}
    with pytest.raises(ConfigError) as caught:
        load_deployment(write_config(edits), check_secrets=False)
    assert [f for f, _ in caught.value.problems] == ["policy.security_wizard.enable_tls_1_0"]


def test_a_stricter_minimum_is_not_a_weakening(write_config, tmp_path):
    """Asking for more DNS servers than the guide is allowed: only the count is checked."""
    _policy_copy(tmp_path, "min_dns_servers = 2", "min_dns_servers = 3")
    with pytest.raises(ConfigError) as caught:
        load_deployment(write_config({"deployment.policy": "site-policy.toml"}), check_secrets=False)
    assert [f for f, _ in caught.value.problems] == ["network.dns_servers"]
    assert floor_problems(packaged_policy(), where="x") == []


def test_recommended_values_may_differ_and_are_listed(write_config, tmp_path):
    """The MTU in the policy file and the DSCP in [policy] may differ; each is listed as a deviation."""
    _policy_copy(tmp_path, "mtu = 1400", "mtu = 1500")
    edits = {"deployment.policy": "site-policy.toml", "policy.global_settings.management_qos": 18}
    d = load_deployment(write_config(edits), check_secrets=False)
    assert d.policy.location.mtu == 1500 and d.policy.global_settings.management_qos == 18
    by_field = {field: (guide, used, words) for field, guide, used, words in d.policy_deviations}
    assert by_field["location.mtu"][:2] == (1400, 1500)
    assert "We recommend a value of 1400" in by_field["location.mtu"][2]
    assert by_field["global_settings.management_qos"][:2] == (16, 18)
    assert "We recommend a value of 16" in by_field["global_settings.management_qos"][2]
    assert set(by_field) == {"location.mtu", "global_settings.management_qos"}


def test_orchestrator_settings_are_not_guide_deviations(write_config):
    """Retry settings are the orchestrator's own: changing them is allowed and is not a deviation from the guide."""
    d = load_deployment(write_config({"policy.retry.max_attempts": 3}), check_secrets=False)
    assert d.policy.retry.max_attempts == 3 and d.policy_deviations == ()


def test_the_deployment_records_its_files_and_their_hashes(write_config, tmp_path):
    """source_sha256, policy_path and policy_sha256 are those of the files as read."""
    policy = _policy_copy(tmp_path, "mtu = 1400", "mtu = 1450")
    path = write_config({"deployment.policy": "site-policy.toml"})
    d = load_deployment(path, check_secrets=False)
    assert d.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (d.policy_path, d.policy_sha256) == (str(policy), hashlib.sha256(policy.read_bytes()).hexdigest())
    packaged = load_deployment(write_config({"deployment.policy": DELETE}, name="other.toml"), check_secrets=False)
    assert packaged.policy_path == str(POLICY_PATH)
    assert packaged.policy_sha256 == hashlib.sha256(POLICY_PATH.read_bytes()).hexdigest()


def test_every_fixed_value_has_the_guide_words_or_an_orchestrator_note():
    """The floor's data: each key of the packaged policy carries the words its refusal quotes."""
    words = guide_words()
    missing = [key for key, quote in words.items() if not quote and not key.endswith(".customizable")]
    assert missing == [], missing
    assert words["security_wizard.enable_tls_1_0"] == "Enable TLS 1.0 (YES) NO"
    assert policy_deviations(packaged_policy()) == ()
