"""Whether a valid deployment can run here, now: the systems' modes are built and every file it names is usable.

Run by ``load_deployment(check_secrets=True)`` with the other checks, so every problem is in
one report before the journal, its key or the simulated world is created. A file is checked
where its system uses it: ``vcenter.ca_file`` and the OVAs when vCenter is real,
``pki.ca_chain`` when certificates are signed by hand or by a program (modes ``manual`` and
``command``, whose program must be there too), and so on; a file a simulated system never opens
is not required.
"""

from __future__ import annotations

import datetime
import os
import re

from config._reader import Problems
from config.model import Deployment

__all__ = ["file_problems", "ready_problems"]

_URL = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def _readable(path: str, field: str, what: str, problems: Problems) -> bytes | None:
    """The file's first MiB (all of a certificate file), or None after recording why it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20)
    except FileNotFoundError:
        problems.append((field, f"file not found (got {path!r}); put {what} there or correct the path"))
    except IsADirectoryError:
        problems.append((field, f"not a file (got the directory {path!r}); give the path of {what}"))
    except OSError as exc:
        problems.append((field, f"file cannot be read (got {path!r}: {exc.strerror}); make it readable by this user"))
    return None


def _certificates(path: str, field: str, what: str, problems: Problems) -> None:
    """A PEM file of certificates (a trust anchor or a client certificate), each valid now."""
    data = _readable(path, field, what, problems)
    if data is None:
        return
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        problems.append(
            (field, f"not a PEM certificate file (got {path!r}); give {what} as PEM (-----BEGIN CERTIFICATE-----)")
        )
        return
    now = datetime.datetime.now(datetime.UTC)
    for certificate in certificates:
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            problems.append(
                (
                    field,
                    (
                        f"certificate {certificate.subject.rfc4514_string()!r} is not valid now (got validity "
                        f"{certificate.not_valid_before_utc:%Y-%m-%d}..{certificate.not_valid_after_utc:%Y-%m-%d} "
                        f"in {path!r}); renew {what}"
                    ),
                )
            )


def _client_certificate(d: Deployment, path: str, problems: Problems) -> None:
    """The certificate the orchestrator logs in with once client certificates are required
    (``ldap_authenticated``): found wrong only then, the run would stop there, after the
    irreversible steps. Its identity per ``ldap.client_certificate`` must be ``ldap.verify_user``,
    it must chain to ``pki.ca_chain`` (what the Manager trusts) and allow TLS client use."""
    if d.ldap is None or not d.ldap.verify_user or d.pki is None:
        return
    from cryptography import x509

    from config._x509 import client_certificate_problems

    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificates(f.read())[0]
    chain: list[x509.Certificate] = []
    if d.pki.ca_chain and os.path.isfile(d.pki.ca_chain):
        try:
            with open(d.pki.ca_chain, "rb") as f:
                chain = x509.load_pem_x509_certificates(f.read())
        except (OSError, ValueError):
            pass  # reported under pki.ca_chain
    for problem in client_certificate_problems(
        cert, mode=d.ldap.client_certificate, identity=d.ldap.verify_user, chain=chain
    ):
        problems.append(("pexip_api.client_cert", f"{problem} (got {path!r}); give the orchestrator's own certificate"))


def _program(d: Deployment, program: str, problems: Problems) -> None:
    """``pki.command``'s program: on ``PATH``, or a path (relative to the configuration file)."""
    import shutil  # here, not at the top: only a command CA needs it (start-up, #11)

    if "/" in program:
        base = os.path.dirname(d.source) if d.source else os.getcwd()
        found = os.path.join(base, program) if not os.path.isabs(program) else program
        usable = os.path.isfile(found) and os.access(found, os.X_OK)
    else:
        usable = shutil.which(program) is not None
    if not usable:
        problems.append(
            (
                "pki.command",
                f"program not found or not executable (got {program!r}); install it, "
                "or give its full path as the first item of pki.command",
            )
        )


def file_problems(deployment: Deployment) -> Problems:
    """Every file the deployment's real systems (and hand-signed certificates) will open that is not usable."""
    d, problems = deployment, Problems()
    if d.vcenter is not None and d.vcenter.mode == "real":
        if d.vcenter.ca_file:
            _certificates(d.vcenter.ca_file, "vcenter.ca_file", "the CA certificate that signed vCenter's", problems)
        if d.ova is not None:
            needed = [("ova.management", d.ova.management)]
            needed += [("ova.conferencing", d.ova.conferencing)] if d.conferencing else []
            for field, location in needed:
                if isinstance(location, str) and not _URL.match(location):
                    _readable(location, field, "the Pexip Infinity OVA", problems)
    api = d.pexip_api
    if api is not None and api.mode == "real":
        if api.ca_file:
            _certificates(api.ca_file, "pexip_api.ca_file", "the CA chain of the Management Node", problems)
        if api.client_cert:
            before = len(problems)
            _certificates(api.client_cert, "pexip_api.client_cert", "the orchestrator's client certificate", problems)
            if len(problems) == before:  # readable, PEM, valid now: now what it is good for
                _client_certificate(d, api.client_cert, problems)
        if api.provisioning_ca_file and d.conferencing:
            what = "the CA of the Conferencing Nodes' provisioning certificates"
            _certificates(api.provisioning_ca_file, "pexip_api.provisioning_ca_file", what, problems)
    known_hosts = d.console.known_hosts if d.console is not None and d.console.mode == "real" else None
    if known_hosts:
        data = _readable(known_hosts, "console.known_hosts", "an OpenSSH known_hosts file", problems)
        if data is not None and not data.strip():
            problems.append(
                (
                    "console.known_hosts",
                    f"empty (got {known_hosts!r}); list the nodes' SSH host keys so the console can verify them",
                )
            )
    if d.ldap is not None and d.ldap.mode == "real" and d.ldap.ca_file:
        _certificates(d.ldap.ca_file, "ldap.ca_file", "the CA certificate that signed the LDAP server's", problems)
    if d.pki is not None and d.pki.mode == "command" and d.pki.command:
        _program(d, d.pki.command[0], problems)
    if d.pki is not None and d.pki.mode in ("manual", "command") and d.pki.ca_chain:
        _certificates(d.pki.ca_chain, "pki.ca_chain", "the trusted CA chain the guide requires uploading", problems)
        if d.pki.inbox and os.path.exists(d.pki.inbox) and not os.path.isdir(d.pki.inbox):
            problems.append(
                (
                    "pki.inbox",
                    f"not a directory (got {d.pki.inbox!r}); give the directory signed certificates are dropped in",
                )
            )
    return problems


def ready_problems(deployment: Deployment) -> Problems:
    """:func:`file_problems`: all that stops a valid deployment running here (every real adapter is built)."""
    return file_problems(deployment)
