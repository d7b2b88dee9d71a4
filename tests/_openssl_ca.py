"""A real `openssl ca` in a test directory: the CA a `[pki] mode = "command"` deployment runs.

Its own root (made by `openssl req -x509`), a database, and a configuration that copies the
CSR's subject alternative names and usages into the certificate, as a site's CA would.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from config.model import PkiSpec

__all__ = ["openssl_ca", "openssl_sign", "OPENSSL_CA_CONFIG"]

OPENSSL_CA_CONFIG = """\
[ca]
default_ca = site_ca

[site_ca]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir/issued
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = {days}
policy = any_subject
copy_extensions = copy
unique_subject = no
x509_extensions = leaf

[any_subject]
commonName = supplied
organizationName = optional
countryName = optional

[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

# The wrong answers a CA can give (openssl_sign(..., "-extensions", NAME)): set here, they are not
# taken from the CSR (copy_extensions = copy never overrides).
[server_only]
basicConstraints = critical, CA:FALSE
extendedKeyUsage = serverAuth

[other_host]
basicConstraints = critical, CA:FALSE
subjectAltName = DNS:intruder.example.com
"""


def openssl_ca(tmp: Path, pki: PkiSpec, *, days: int = 30) -> PkiSpec:
    """Make a CA under ``tmp/ca`` and return ``pki`` set to sign with it (chain ``tmp/pki/ca-chain.pem``)."""
    ca = tmp / "ca"
    (ca / "issued").mkdir(parents=True, exist_ok=True)
    (ca / "index.txt").write_text("")
    (ca / "serial").write_text("1000\n")
    (ca / "openssl.cnf").write_text(OPENSSL_CA_CONFIG.format(dir=ca, days=days))
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",  # an RSA key would take a second to make
            "-nodes",
            "-keyout",
            str(ca / "ca.key"),
            "-out",
            str(ca / "ca.pem"),
            "-subj",
            "/O=Example/CN=Site Root CA",
            "-days",
            "90",
        ],
        check=True,
        capture_output=True,
    )
    (tmp / "pki").mkdir(exist_ok=True)
    (tmp / "pki" / "ca-chain.pem").write_text((ca / "ca.pem").read_text())
    command = ("openssl", "ca", "-config", str(ca / "openssl.cnf"), "-batch", "-notext", "-in", "/dev/stdin")
    return dataclasses.replace(
        pki,
        mode="command",
        ca_chain=str(tmp / "pki" / "ca-chain.pem"),
        inbox=str(tmp / "pki" / "inbox"),
        command=command,
    )


def openssl_sign(tmp: Path, csr_pem: str, *options: str) -> str:
    """The certificate the CA of :func:`openssl_ca` under ``tmp`` signs for ``csr_pem``, with ``openssl ca`` ``options``
    (``-extensions server_only``, ``-startdate``/``-enddate``, ``-subj``)."""
    ca = tmp / "ca" / "openssl.cnf"
    done = subprocess.run(
        ["openssl", "ca", "-config", str(ca), "-batch", "-notext", "-in", "/dev/stdin", *options],
        input=csr_pem,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout
