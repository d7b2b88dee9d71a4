"""Validation gaps closed (issue #7, findings 14 and 15): counts of distinct servers, the SNMP community,
secrets inside ordinary text, and bad inputs that ended in a traceback."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from config.errors import ConfigError
from config.load import POLICY_PATH, load_deployment
from config.rules import (
    HEARTBEATS_PER_LEASE,
    MIN_LEASE_TIMEOUT_S,
    heartbeat_period,
    lease_timeout_problem,
)
from orchestrator.cli import cli
from tests.config.conftest import write_runnable_example


def _problems(write_config, edits) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_deployment(write_config(edits), check_secrets=False)
    return dict(caught.value.problems)


NTP = [
    {"address": "ntp1.example.com", "key_id": 1, "key": "env:NTP_KEY_1"},
    {"address": "ntp2.example.com", "key_id": 2, "key": "env:NTP_KEY_2"},
]


@pytest.mark.parametrize(
    ("edits", "field", "fragment"),
    [
        (
            {"network.ntp_servers": [NTP[0], {**NTP[0], "key_id": 2}]},
            "network.ntp_servers",
            "at least 2",
        ),  # one server twice
        (
            {"network.ntp_servers": [NTP[0], {**NTP[0], "address": "NTP1.example.com ", "key_id": 2}]},
            "network.ntp_servers",
            "at least 2",
        ),  # the same server in another case, with a space
        (
            {"network.ntp_servers": [NTP[0], {**NTP[1], "key_id": 1}]},
            "network.ntp_servers",
            "distinct key ids",
        ),  # one key id
        (
            {"network.ntp_servers": [NTP[0], NTP[0]]},
            "network.ntp_servers[1].address",
            "listed twice",
        ),  # the entry is named
        (
            {"network.dns_servers": ["10.10.0.2", "10.10.0.2"]},
            "network.dns_servers",
            "at least 2",
        ),  # one DNS server twice
    ],
)
def test_the_same_server_twice_does_not_make_two(write_config, edits, field, fragment):
    """The guide's "at least two" counts distinct servers and distinct NTP key ids."""
    problems = _problems(write_config, edits)
    assert field in problems and fragment in problems[field], problems


@pytest.mark.parametrize("community", ["PUBLIC", "public ", " Public", "pub lic"])
def test_the_default_community_in_any_case_or_spacing_is_refused(write_config, community):
    """SNMP community "PUBLIC" or "public " is still the default the guide says to change."""
    problems = _problems(write_config, {"snmp.community": community})
    assert "the default community" in problems["snmp.community"]


def test_a_lease_timeout_below_three_heartbeats_is_refused(write_config):
    """lease_timeout_s = 0.4 (accepted before: a live lease then expired between heartbeats) is refused."""
    problems = _problems(write_config, {"journal.lease_timeout_s": 0.4})
    assert f"use at least {MIN_LEASE_TIMEOUT_S} seconds" in problems["journal.lease_timeout_s"]
    load_deployment(write_config({"journal.lease_timeout_s": MIN_LEASE_TIMEOUT_S}), check_secrets=False)


@pytest.mark.parametrize("timeout", [0.01, 0.4, 1.0, 1.49, 1.5, 1.9, 2.0, 7.3, 60.0, 3600.0])
def test_the_rule_and_the_engines_heartbeat_agree(timeout):
    """A timeout passes the rule exactly when it spans HEARTBEATS_PER_LEASE heartbeats of the engine's period."""
    spans = timeout >= HEARTBEATS_PER_LEASE * heartbeat_period(timeout) - 1e-9
    assert (lease_timeout_problem(timeout) is None) == spans


def test_a_secret_inside_ordinary_text_is_refused(example_secrets, monkeypatch):
    """A BIOS password that is also a location's name is refused at load instead of erasing "London" from the record."""
    config = write_runnable_example(example_secrets)
    monkeypatch.setenv("BIOS_PASSWORD", "London")
    with pytest.raises(ConfigError) as caught:
        load_deployment(config)
    assert [f for f, _ in caught.value.problems] == ["bios.password"]
    message = caught.value.problems[0][1]
    assert "also appears in the configuration's ordinary text" in message and "location" in message
    assert "London" not in message


# --- bad inputs: exit 2 naming the file or option, never a traceback ------------------------


def _socket_file(path: Path) -> Path:
    """A path that exists but cannot be read as a file (even by root): a Unix socket."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()
    return path


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_bytes(b"\x00\xff\xfe\x89PNG\r\n"),  # a binary file
        _socket_file,  # a file that cannot be read
    ],
)
def test_a_binary_or_unreadable_config_is_exit_2(tmp_path, make):
    """-c naming a binary or unreadable file is a bad-input report naming the file."""
    config = tmp_path / "orchestrator.toml"
    make(config)
    code, err = _cli("-c", str(config), "run", "--dry-run")
    assert code == 2 and "Traceback" not in err, err
    assert f"{config}: " in err or "-c/--config: " in err  # the CLI itself refuses what is not a regular file
    with pytest.raises(ConfigError) as caught:
        load_deployment(config)
    assert [f for f, _ in caught.value.problems] == [str(config)]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_config_without_read_permission_is_exit_2(tmp_path):
    """A configuration file the user may not read is a bad-input report naming it."""
    config = tmp_path / "orchestrator.toml"
    config.write_text("[deployment]\n")
    config.chmod(0)
    code, err = _cli("-c", str(config), "run", "--dry-run")
    assert code == 2 and f"{config}: deployment file cannot be read" in err, err


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.mkdir(),  # a directory
        lambda p: p.write_bytes(b"\x00\xff\xfe\x89PNG\r\n"),  # a binary file
        _socket_file,  # a file that cannot be read
    ],
)
def test_a_policy_path_that_is_no_policy_file_is_exit_2(example_secrets, monkeypatch, make):
    """[deployment] policy naming a directory, a binary or an unreadable file is a bad-input report naming it."""
    config = write_runnable_example(example_secrets)
    policy = example_secrets / "site-policy"
    make(policy)
    named = 'name = "secure-lab"'
    config.write_text(config.read_text().replace(named, f'{named}\npolicy = "site-policy"', 1))
    monkeypatch.chdir(example_secrets)
    code, err = _cli("-c", str(config), "run", "--dry-run")
    assert code == 2 and f"{policy}: " in err and "Traceback" not in err, err
    assert POLICY_PATH.exists()


def test_an_unknown_log_level_is_exit_2():
    """--log-level FOO is refused naming the option and the choices."""
    result = CliRunner().invoke(cli, ["--log-level", "FOO", "status"])
    assert result.exit_code == 2 and "--log-level" in result.output and "'FOO' is not one of" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
