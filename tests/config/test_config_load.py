"""load_deployment: the example loads, and each kind of mistake is reported with its field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import config
import config.load
from config.errors import ConfigError
from config.load import load_deployment
from config.model import Deployment
from config.secrets import Secret
from tests.config.conftest import write_runnable_example

EXAMPLE = Path(config.__file__).with_name("example.toml")
# "<field>: <problem> (got <value>); <what is allowed / the fix>"
MESSAGE = re.compile(r"^\S+: [^\n]+ \(got [^\n]*\); [^\n]+$")


def problem_line(error: ConfigError, field: str) -> str:
    """The message line of ``error`` for ``field`` (fails when there is none)."""
    lines = [line for line in str(error).splitlines() if line.startswith(f"{field}: ")]
    assert lines, f"no problem for {field} in:\n{error}"
    return lines[0]


def test_example_loads_without_problems():
    """The shipped example is a complete, valid deployment (secrets are not read)."""
    d = load_deployment(EXAMPLE, check_secrets=False)
    assert isinstance(d, Deployment)
    assert d.name == "secure-lab"
    assert [n.name for n in d.nodes] == ["pexip-mgr", "pexip-conf-01", "pexip-conf-02", "pexip-conf-03"]
    assert len(d.vcenter.hosts) == 2
    assert {r for m in d.ldap.role_mappings for r in m.roles} == set(d.policy.roles.all_roles)
    assert d.pki.mode == "manual" and d.vcenter.mode == "real"
    assert all(isinstance(s, Secret) for s in d.secrets()) and len(d.secrets()) == 13  # +journal key, console pw


def test_relative_paths_resolve_against_the_file(write_config, tmp_path):
    """ca_file, OVA paths, file: secrets and the journal resolve against the deployment file's directory."""
    d = load_deployment(write_config(), check_secrets=False)
    assert d.vcenter.ca_file == str(tmp_path / "certs" / "vcenter-ca.pem")
    assert d.ova.management == str(tmp_path / "images" / "Pexip_Infinity_pxMgr.ova")
    assert d.journal.path == str(tmp_path / "orchestrator.journal.sqlite")
    assert d.pexip_api.client_key.available() == f"file {tmp_path / 'certs' / 'orchestrator-admin.key'} does not exist"


def test_absent_optional_sections_take_defaults(write_config, tmp_path):
    """Without [simulation], [journal] and optional keys, the defaults apply (host concurrency from the policy)."""
    edits = {
        "simulation": "<delete>",
        "journal": "<delete>",
        "vcenter.hosts[0].max_concurrent": "<delete>",
        "ldap.client_certificate": "<delete>",
    }
    d = load_deployment(write_config(edits), check_secrets=False)
    assert d.simulation.world == str(tmp_path / "orchestrator.world.sqlite") and d.simulation.latency == 0.0
    assert d.journal.lease_timeout_s == 60.0
    assert d.vcenter.hosts[0].max_concurrent == d.policy.concurrency.per_host
    assert d.ldap.client_certificate == d.policy.authentication.client_certificate


def test_policy_overrides_in_the_deployment_apply(write_config):
    """A customizable value in [policy] replaces the guide's default in deployment.policy."""
    d = load_deployment(write_config({"policy.security_wizard.sip_tls_listen_port": 5071}), check_secrets=False)
    assert d.policy.security_wizard.sip_tls_listen_port == 5071
    assert d.policy.security_wizard.enable_tls_1_0 is False


def test_secrets_present_load_with_check(example_secrets):
    """With every env var set and every file present, check_secrets=True passes."""
    path = write_runnable_example(example_secrets)
    d = load_deployment(path)
    assert d.vcenter.password.reveal() == "test-value-of-vcenter_password"


# Each case: a small edit of example.toml, the dotted field the message must name, and a
# fragment of that field's message.
BROKEN = [
    ({"management.vlan": "<delete>"}, "management.vlan", "missing required field"),  # missing field
    ({"management.cpus": "4"}, "management.cpus", "expected an integer"),  # wrong type: a string for an integer
    (
        {"global_settings.enable_sip": "yes"},
        "global_settings.enable_sip",
        "expected a boolean",
    ),  # wrong type: a string for a boolean
    ({"ldap": "<delete>"}, "ldap", "missing required table"),  # a whole required section missing
    ({"conferencing[0].vlan": 4095}, "conferencing[0].vlan", "reserved for virtual guest tagging"),  # VLAN 4095
    ({"conferencing[1].vlan": 5000}, "conferencing[1].vlan", "out of range"),  # VLAN beyond 4094
    (
        {"conferencing[2].vlan": 1002, "conferencing[2].portgroup": "Pexip-VLAN1002"},
        "conferencing[2].vlan",
        "reserved_vlans",
    ),  # a reserved VLAN
    (
        {"conferencing[2].vlan": 200},
        "conferencing[2].vlan",
        "a port group carries one VLAN",
    ),  # two VLANs on one port group of a host
    (
        {"policy.security_wizard.no_such_answer": True},
        "policy.security_wizard.no_such_answer",
        "unknown policy key",
    ),  # unknown policy key
    ({"policy.nonsense.key": 1}, "policy.nonsense.key", "known sections"),  # unknown policy section
    (
        {"policy.security_wizard.enable_tls_1_0": True},
        "policy.security_wizard.enable_tls_1_0",
        "fixed by the secure-mode guide",
    ),  # non-customizable override
    (
        {"policy.global_settings.management_session_timeout": 2},
        "policy.global_settings.management_session_timeout",
        "5..1440",
    ),  # customizable, out of range
    ({"bios.password": "hunter2hunter2"}, "bios.password", "secrets must be references"),  # inline secret
    ({"network.ntp_servers[0].key": "s3cretkey"}, "network.ntp_servers[0].key", "never the value"),  # inline NTP key
    ({"network.ntp_servers": lambda servers: servers[:1]}, "network.ntp_servers", "at least 2"),  # one NTP server
    (
        {"network.ntp_servers[1].key": "<delete>"},
        "network.ntp_servers[1].key",
        "NTP server without key",
    ),  # NTP without key
    ({"network.ntp_servers[0].key_id": 0}, "network.ntp_servers[0].key_id", "1..65535"),  # key_id out of range
    ({"network.dns_servers": ["10.10.0.2"]}, "network.dns_servers", "at least 2"),  # one DNS server
    ({"network.dns_servers[1]": "dns2.example.com"}, "network.dns_servers[1]", "IP address only"),  # DNS by name
    ({"network.syslog_servers": []}, "network.syslog_servers", "at least 1"),  # no syslog server
    (
        {"network.syslog_servers[0].transport": "smoke"},
        "network.syslog_servers[0].transport",
        "udp, tcp, tls",
    ),  # bad transport
    ({"snmp.community": "public"}, "snmp.community", "other than 'public'"),  # the default community
    ({"snmp.community": "a-community-longer-than-16"}, "snmp.community", "1..16 characters"),  # community too long
    (
        {"conferencing[0].host": "esxi-09.example.com"},
        "conferencing[0].host",
        "not among vcenter.hosts",
    ),  # unknown host
    ({"conferencing[1].name": "pexip-conf-01"}, "conferencing[1].name", "duplicate node name"),  # duplicate node name
    ({"conferencing[2].address": "10.10.0.21"}, "conferencing[2].address", "duplicate address"),  # duplicate address
    (
        {"conferencing[2].hostname": "CONF01"},
        "conferencing[2].hostname",
        "duplicate hostname",
    ),  # duplicate hostname, any case
    ({"management.address": "10.10.0.300"}, "management.address", "not an IPv4 address"),  # bad IP
    ({"management.netmask": "255.0.255.0"}, "management.netmask", "contiguous"),  # bad netmask
    ({"management.gateway": "10.20.0.1"}, "management.gateway", "subnet"),  # gateway outside the subnet
    (
        {"conferencing[0].disk_iops_limit": 19001},
        "vcenter.hosts[0].datastore_iops_capacity",
        "got 20001 > 20000",
    ),  # IOPS over capacity
    ({"conferencing[2].cpus": 1}, "conferencing[2].cpus", "2..128"),  # cpus 1
    ({"conferencing[2].memory_mb": 1024}, "conferencing[2].memory_mb", "2000..64000"),  # too little memory
    ({"conferencing[2].location": "Paris"}, "conferencing[2].location", "not in network.locations"),  # unknown location
    ({"surprise": 1}, "surprise", "unknown key"),  # unknown top-level key
    ({"conferencing[1].vlna": 100}, "conferencing[1].vlna", "did you mean 'vlan'"),  # typo'd key in a node
    (
        {"management.location": "London"},
        "management.location",
        "unknown key",
    ),  # a conferencing-only key on the management node
    (
        {"vcenter.hosts[1].management_network": "VM Network"},
        "vcenter.hosts[1].management_network",
        "physical network",
    ),  # one network for both
    ({"ldap.role_mappings": lambda m: m[:2]}, "ldap.role_mappings", "'Auditor' is not mapped"),  # role without mapping
    (
        {"ldap.role_mappings[0].roles": ["Superuser"]},
        "ldap.role_mappings[0].roles[0]",
        "no such role on a Pexip Manager",
    ),  # a role that does not exist
    (
        {"ldap.role_mappings[0].roles": ["Administrator"]},
        "ldap.role_mappings[0].roles[0]",
        "no such role on a Pexip Manager (got 'Administrator'); map Read-only, Read-write and Auditor",
    ),  # not on a new Manager
    ({"ldap.client_certificate": "SAN"}, "ldap.client_certificate", "CN, UPN"),  # client certificate neither CN nor UPN
    (
        {"vcenter.ca_file": "<delete>"},
        "vcenter.ca_file",
        "needs ca_file or thumbprint",
    ),  # real vCenter without ca_file/thumbprint
    ({"vcenter.thumbprint": "sha1:AB:CD"}, "vcenter.thumbprint", "32 hex byte pairs"),  # bad thumbprint
    ({"vcenter.url": "http://vcenter.example.com/sdk"}, "vcenter.url", "https://"),  # plain http in real mode
    ({"pexip_api.mode": "pretend"}, "pexip_api.mode", "real, sim"),  # mode not allowed
    ({"pexip_api.tls_fingerprint": "AB:CD"}, "pexip_api.tls_fingerprint", "32 hex byte pairs"),  # bad Manager pin
    ({"pexip_api.address": "pexmgr"}, "pexip_api.address", "not an IPv4 address"),  # a name where the address goes
    (
        {"pexip_api.client_key": "<delete>"},
        "pexip_api.client_key",
        "client certificates are required",
    ),  # real API without a client identity
    (
        {"conferencing[1].provisioning_thumbprint": "<delete>"},
        "conferencing[1].provisioning_thumbprint",
        "goes only to a verified node",
    ),  # real API, a Conferencing Node's provisioning certificate not verifiable
    (
        {"conferencing[0].provisioning_thumbprint": "AB:CD"},
        "conferencing[0].provisioning_thumbprint",
        "32 hex byte pairs",
    ),  # bad provisioning thumbprint
    (
        {"conferencing[0].provisioning_url": "http://10.10.0.21:8443/"},
        "conferencing[0].provisioning_url",
        "https://",
    ),  # the bootstrap file over plain http
    ({"pki.key_type": "DSA1024"}, "pki.key_type", "RSA2048"),  # key type the CSR generator does not make
    ({"pki.dn": "O=Example,C=GBR"}, "pki.dn", "country must be 2 capital letters"),  # a three-letter country
    ({"pki.mode": "command"}, "pki.command", "no program is given"),  # a command CA without its program
    ({"pki.command": "openssl ca"}, "pki.command", "expected an array"),  # a shell string, not an argv list
    ({"pki.command_timeout_s": 0}, "pki.command_timeout_s", "must be > 0"),  # a CA program never given time
    ({"pki.subject": "hostname"}, "pki.subject", "fqdn, address"),  # a CSR subject the orchestrator cannot name
    ({"pki.min_valid_days": -1}, "pki.min_valid_days", "must be 0..3650 days"),  # a validity floor below zero
    ({"deployment.name": "Secure Lab"}, "deployment.name", "a-z, 0-9"),  # deployment name not usable in VM identities
]


@pytest.mark.parametrize(("edits", "field", "fragment"), BROKEN)
def test_broken_configuration_is_reported_with_its_field(write_config, edits, field, fragment):
    """Each broken file raises ConfigError whose message names the field, the value and the fix."""
    with pytest.raises(ConfigError) as caught:
        load_deployment(write_config(edits), check_secrets=False)
    line = problem_line(caught.value, field)
    assert fragment in line
    assert MESSAGE.match(line), f"not '<field>: <problem> (got <value>); <fix>': {line}"
    assert (field, line[len(field) + 2 :]) in caught.value.problems


def test_every_problem_is_reported_at_once(write_config):
    """Several mistakes in one file give one ConfigError listing all of them."""
    edits = {
        "management.vlan": 4095,
        "snmp.community": "public",
        "surprise": 1,
        "conferencing[0].cpus": "many",
        "policy.security_wizard.enable_tls_1_0": True,
    }
    with pytest.raises(ConfigError) as caught:
        load_deployment(write_config(edits), check_secrets=False)
    fields = [f for f, _ in caught.value.problems]
    assert sorted(fields) == sorted(
        [
            "management.vlan",
            "snmp.community",
            "surprise",
            "conferencing[0].cpus",
            "policy.security_wizard.enable_tls_1_0",
        ]
    )


@pytest.mark.parametrize(
    ("edits", "field"),
    [
        ({"bios.password": "hunter2hunter2"}, "bios.password"),  # an inline string
        ({"snmp.privacy_password": 12345678}, "snmp.privacy_password"),  # an inline number
        ({"bios": [{"password": "hunter2hunter2"}]}, "bios"),  # a misplaced table holding one
        ({"snmp.community": "hunter2hunter2hunter2"}, "snmp.community"),  # a community (a password in SNMP) too long
    ],
)
def test_secret_values_are_never_echoed(write_config, edits, field):
    """The error about a field holding a secret value names the field once and does not repeat the value."""
    with pytest.raises(ConfigError) as caught:
        load_deployment(write_config(edits), check_secrets=False)
    assert "hunter2" not in str(caught.value) and "12345678" not in str(caught.value)
    assert [f for f, _ in caught.value.problems].count(field) == 1  # not also "missing"


def test_missing_env_secret_is_reported_with_check(example_secrets, monkeypatch):
    """check_secrets=True names the field and the environment variable that is not set."""
    monkeypatch.delenv("LDAP_BIND_PASSWORD")
    path = write_runnable_example(example_secrets)
    with pytest.raises(ConfigError) as caught:
        load_deployment(path)
    assert caught.value.problems == [("ldap.bind_password", caught.value.problems[0][1])]
    line = problem_line(caught.value, "ldap.bind_password")
    assert "LDAP_BIND_PASSWORD is not set" in line and MESSAGE.match(line)
    load_deployment(path, check_secrets=False)  # without the check it loads


def test_missing_file_secret_is_reported_with_check(example_secrets):
    """A file: secret that does not exist is named with its resolved path."""
    (example_secrets / "certs" / "orchestrator-admin.key").unlink()
    path = write_runnable_example(example_secrets)
    with pytest.raises(ConfigError) as caught:
        load_deployment(path)
    assert str(example_secrets / "certs" / "orchestrator-admin.key") in problem_line(
        caught.value, "pexip_api.client_key"
    )


@pytest.mark.parametrize(
    ("variable", "value", "field", "fragment"),
    [
        ("BIOS_PASSWORD", "abc", "bios.password", "at least 4"),  # too short to be scrubbed from logs
        ("SNMP_AUTH_PASSWORD", "short", "snmp.authentication_password", "8..100"),  # SNMPv3 passwords are 8..100
    ],
)
def test_unusable_secret_length_is_reported(example_secrets, monkeypatch, variable, value, field, fragment):
    """A readable secret of an unusable length is refused, its value not shown."""
    monkeypatch.setenv(variable, value)
    path = write_runnable_example(example_secrets)
    with pytest.raises(ConfigError) as caught:
        load_deployment(path)
    line = problem_line(caught.value, field)
    assert fragment in line and f"'{value}'" not in line


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[deployment\nname = 'x'", "not valid TOML"),  # a syntax error
        (None, "not found"),  # no file at all
    ],
)
def test_unreadable_file_is_a_config_error(tmp_path, content, fragment):
    """A file that is missing or not TOML raises ConfigError naming the file."""
    path = tmp_path / "deployment.toml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_deployment(path)
    assert str(path) in str(caught.value) and fragment in str(caught.value)


def test_custom_policy_file_resolves_against_the_deployment(write_config, tmp_path):
    """[deployment] policy names a policy file relative to the deployment file."""
    text = config.POLICY_PATH.read_text().replace("min_dns_servers = 2", "min_dns_servers = 3")
    (tmp_path / "site-policy.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_deployment(write_config({"deployment.policy": "site-policy.toml"}), check_secrets=False)
    assert "at least 3" in problem_line(caught.value, "network.dns_servers")


def test_public_names_are_pinned():
    """The package's public surface is exactly the loader API."""
    expected = [
        "POLICY_PATH",
        "load_deployment",
        "load_policy",
        "simulated_deployment",
        "unavailable_secrets",
        "validate",
    ]
    assert sorted(config.__all__) == expected
    assert sorted(config.load.__all__) == expected
    assert all(getattr(config, name) is getattr(config.load, name) for name in expected)


@pytest.mark.parametrize(
    "edits",
    [
        {"pexip_api.provisioning_trust_first_use": True},  # explicit trust on first use
        {"pexip_api.mode": "sim"},  # the simulated nodes need no certificate
    ],
)
def test_a_provisioning_certificate_need_not_be_pinned_when_otherwise_trusted(write_config, edits):
    """Without any node's provisioning_thumbprint the file loads once another way to trust the nodes is set."""
    unpinned = {f"conferencing[{i}].provisioning_thumbprint": "<delete>" for i in range(3)}
    deployment = load_deployment(write_config({**unpinned, **edits}), check_secrets=False)
    assert all(n.provisioning_thumbprint is None for n in deployment.conferencing)


def test_an_unreadable_provisioning_ca_file_is_reported(tmp_path):
    """pexip_api.provisioning_ca_file must be a readable PEM file once the nodes are real: named before any run."""
    import dataclasses

    from config._ready import file_problems
    from config.load import simulated_deployment

    deployment = simulated_deployment(2, tmp_path)
    api = dataclasses.replace(deployment.pexip_api, mode="real", provisioning_ca_file=str(tmp_path / "missing.pem"))
    fields = [field for field, _ in file_problems(dataclasses.replace(deployment, pexip_api=api))]
    assert "pexip_api.provisioning_ca_file" in fields
