"""The remote syslog adapter against a real rsyslog: RFC 5424 lines over TCP and UDP; a server down is reported, never
raised."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.sim.syslog import SimSyslog
from adapters.syslog import RemoteSyslog, format_message
from config.errors import Unreachable
from config.model import SyslogServer
from orchestrator.lab._pki import make_test_pki
from tests.adapters._rsyslog import Rsyslog, running_rsyslog

RFC5424 = re.compile(r"^<133>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ orchestrator - checkpoint - (.*)$")


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    with running_rsyslog(tmp_path / "rsyslog") as server:
        yield server


async def test_a_checkpoint_reaches_rsyslog_over_tcp_and_udp(rsyslog: Rsyslog) -> None:
    """One message per server, as an RFC 5424 line rsyslog keeps verbatim, over each server's transport."""
    servers = [SyslogServer("127.0.0.1", rsyslog.tcp_port, "tcp"), SyslogServer("127.0.0.1", rsyslog.udp_port, "udp")]
    record = {"seq": 7, "head": "ab" * 32}
    async with RemoteSyslog(servers) as syslog:
        assert await syslog.send("checkpoint", json.dumps(record)) == []
    lines = rsyslog.lines(2)
    assert len(lines) == 2
    for line in lines:
        match = RFC5424.match(line)
        assert match, line
        assert json.loads(match.group(1)) == record


async def test_a_server_that_is_down_is_a_failure_returned_not_raised(rsyslog: Rsyslog) -> None:
    """A closed port gives Unreachable for that server only; the others still receive the message."""
    down = SyslogServer("127.0.0.1", 1, "tcp")
    up = SyslogServer("127.0.0.1", rsyslog.tcp_port, "tcp")
    # The closed port is refused at once; 30 s is the reachable one's, a bound on a hang (2 s, a loaded machine's
    # TCP send to rsyslog could outlast it and fail as a Timeout).
    failures = await RemoteSyslog([down, up], timeout_s=30).send("checkpoint", "{}")
    assert [(where, type(err)) for where, err in failures] == [("tcp://127.0.0.1:1", Unreachable)]
    assert "cannot reach" in str(failures[0][1])
    assert len(rsyslog.lines(1)) == 1


async def test_tls_to_a_plain_tcp_port_fails_as_an_adapter_error(rsyslog: Rsyslog) -> None:
    """A TLS handshake that cannot complete is mapped (never a raw ssl error) and reported."""
    failures = await RemoteSyslog([SyslogServer("127.0.0.1", rsyslog.tcp_port, "tls")], timeout_s=2).send("x", "{}")
    assert len(failures) == 1 and failures[0][1].system == "syslog"


async def test_a_checkpoint_reaches_rsyslog_over_tls_verified_against_its_ca(tmp_path: Path) -> None:
    """RFC 5425 (octet-counted frames over TLS) to rsyslog's gtls input, the server's certificate verified."""
    pki = make_test_pki(tmp_path / "pki", name="syslog")
    with running_rsyslog(tmp_path / "rsyslog", tls=pki) as server:
        assert server.tls_port is not None
        tls = [SyslogServer("127.0.0.1", server.tls_port, "tls")]
        async with RemoteSyslog(tls, ca_file=pki.ca_file) as syslog:
            assert await syslog.send("checkpoint", json.dumps({"seq": 3})) == []
        (line,) = server.lines(1)
    match = RFC5424.match(line)
    assert match and json.loads(match.group(1)) == {"seq": 3}, line


async def test_a_tls_syslog_server_signed_by_another_ca_is_refused_and_gets_nothing(tmp_path: Path) -> None:
    """The sender verifies the server: a certificate from a CA it was not given is a failure naming the trust."""
    pki = make_test_pki(tmp_path / "pki", name="syslog")
    other = make_test_pki(tmp_path / "other", name="other", ca_name="Someone Else's CA")
    with running_rsyslog(tmp_path / "rsyslog", tls=pki) as server:
        assert server.tls_port is not None
        tls = [SyslogServer("127.0.0.1", server.tls_port, "tls")]
        # Refused at the handshake's certificate, not by the timeout: 30 s (3 s before) is a bound on a hang.
        failures = await RemoteSyslog(tls, ca_file=other.ca_file, timeout_s=30).send("checkpoint", "{}")
        assert len(failures) == 1 and "not trusted" in str(failures[0][1]), failures
        assert server.lines(1, timeout_s=0.5) == []


async def test_the_twin_keeps_what_each_server_received_and_fails_like_a_down_server() -> None:
    """The twin formats like the real sender and reports a server it is told is down."""
    twin = SimSyslog([SyslogServer("10.0.0.6", 6514, "tls"), SyslogServer("10.0.0.7", 514, "udp")], down=["10.0.0.7"])
    failures = await twin.send("checkpoint", '{"seq":1}')
    assert [(w, type(e)) for w, e in failures] == [("udp://10.0.0.7:514", Unreachable)]
    assert RFC5424.match(twin.received["tls://10.0.0.6:6514"][0])


def test_the_message_is_one_rfc5424_line() -> None:
    """No line feed inside: a TCP receiver splits messages on it."""
    assert "\n" not in format_message("checkpoint", '{"a":1}', hostname="host name")
    assert format_message("checkpoint", "m", hostname="h").split(" ")[2] == "h"
