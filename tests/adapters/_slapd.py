"""The LDAP tests' private slapd: :mod:`orchestrator.lab._slapd` (the lab's own), skipped where slapd is missing.

with running_slapd(tmp_path / "slapd", deployment.ldap, pki) as slapd:
    deployment = slapd.pointed_at(deployment)   # ldap.mode "real", StartTLS at slapd
    ldaps = slapd.pointed_at(deployment, "ldaps")   # the same server on its ldaps port
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from adapters.sim import _pki as pki
from config.model import LdapSpec
from orchestrator.lab._pki import Pki
from orchestrator.lab._slapd import SLAPD, Slapd, slapd_available
from orchestrator.lab._slapd import running_slapd as _running_slapd
from orchestrator.lab._slapd_data import directory_entries, ldif, user_dn

__all__ = ["Slapd", "running_slapd", "misnamed_pki", "directory_entries", "user_dn", "ldif", "SLAPD"]


@contextmanager
def running_slapd(
    directory: Path,
    ldap: LdapSpec,
    pki: Pki | None,
    *,
    members: Mapping[str, Sequence[str]] | None = None,
    users: Mapping[str, str] | None = None,
    limits: Sequence[str] = (),
    require_tls: bool = True,
) -> Iterator[Slapd]:
    """A slapd holding the entries of ``ldap`` on free loopback ports (StartTLS and ldaps); stopped on exit."""
    if (why := slapd_available()) is not None:
        pytest.skip(why)
    with _running_slapd(
        directory, ldap, pki, members=members, users=users, limits=limits, require_tls=require_tls
    ) as slapd:
        yield slapd


def misnamed_pki(folder: Path, ca_name: str) -> Pki:
    """A test CA ``ca_name`` and a server certificate it signed for another host (``ldap.elsewhere.example``), in
    ``folder``: a server a client trusts, under a name it must refuse."""
    ca_key, ca_cert = pki.make_root(ca_name)
    key = pki.new_key("ECDSAP256")
    cert = pki.sign_csr(pki.make_csr(key, "ldap.elsewhere.example", "O=Test", [], False), ca_key, ca_cert)
    files = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca_file.write_text(ca_cert)
    files.cert_file.write_text(cert)
    files.key_file.write_text(pki.key_pem(key))
    return files
