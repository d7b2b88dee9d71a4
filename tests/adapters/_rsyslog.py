"""A private rsyslog (Debian's `rsyslogd`) on loopback ports: the real remote syslog receiver of the tests."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.lab._pki import Pki

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Rsyslog:
    tcp_port: int
    udp_port: int
    received: Path
    tls_port: int | None = None  # RFC 5425 over GnuTLS (rsyslog-gnutls), when started with a certificate

    def lines(self, count: int, timeout_s: float = 60.0) -> list[str]:
        """The lines received, waiting until there are at least ``count`` (the default bound is one on a hang:
        it returns as soon as they are there)."""
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.received.read_text() if self.received.exists() else ""
            lines = [line for line in text.splitlines() if line]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


@contextmanager
def running_rsyslog(directory: Path, *, tls: Pki | None = None) -> Iterator[Rsyslog]:
    """Start ``rsyslogd -n`` with imtcp and imudp on free loopback ports (and a TLS imtcp input
    serving ``tls``'s certificate, when given); stop it on exit."""
    if not Path(RSYSLOGD).exists():
        pytest.skip("rsyslogd is not installed (Debian package rsyslog; scripts/setup.sh installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    tls_port = _free_port(socket.SOCK_STREAM) if tls else None
    received = directory / "received.log"
    conf = directory / "rs.conf"
    tls_input = (
        f'input(type="imtcp" port="{tls_port}" address="127.0.0.1" streamDriver.name="gtls" '
        f'streamDriver.mode="1" streamDriver.authMode="anon" streamDriver.CAFile="{tls.ca_file}" '
        f'streamDriver.CertFile="{tls.cert_file}" streamDriver.KeyFile="{tls.key_file}")\n'
        if tls
        else ""
    )
    conf.write_text(
        f'global(workDirectory="{directory}")\n'
        'module(load="imtcp")\nmodule(load="imudp")\n'
        f'input(type="imtcp" port="{tcp}" address="127.0.0.1")\n'
        f'input(type="imudp" port="{udp}" address="127.0.0.1")\n'
        f"{tls_input}"
        'template(name="raw" type="string" string="%rawmsg%\\n")\n'
        f'action(type="omfile" file="{received}" template="raw")\n'
    )
    proc = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(conf), "-i", str(directory / "rs.pid")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60  # a bound on a hang, not on how soon
        while True:  # ready when its TCP ports accept
            try:
                for port in (tcp, tls_port):
                    if port is not None:
                        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = proc.stdout.read() if proc.stdout else b""
                    raise RuntimeError(f"rsyslogd did not start: {output!r}") from exc
                time.sleep(0.05)
        yield Rsyslog(tcp, udp, received, tls_port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
