"""The checks of how the real systems' peers are trusted: the SSH console's host key and each Conferencing
Node's provisioning interface (part of :func:`config._validate.validate`)."""

from __future__ import annotations

import re

from config._checks import Check
from config._reader import shown
from config.model import ConsoleSpec, Deployment

__all__ = ["check_console", "check_provisioning"]

_SSH_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}\Z")  # ssh-keygen -lf, OpenSSH's unpadded base64


def check_console(con: ConsoleSpec, c: Check) -> None:
    """The real SSH console: its admin password, and its host key verified before any answer."""
    if isinstance(con.address, str):
        c.need(bool(con.address.strip()), "console.address", "empty; give the Management Node console's IP or name")
    if isinstance(con.host_key_fingerprint, str):
        c.need(
            bool(_SSH_FINGERPRINT.match(con.host_key_fingerprint)),
            "console.host_key_fingerprint",
            f'bad fingerprint format (got {shown(con.host_key_fingerprint)}); write "SHA256:" and the 43 base64 '
            "characters `ssh-keygen -lf <host key>.pub` prints",
        )
    pinned = bool(con.known_hosts or con.host_key_fingerprint)
    if con.trust_on_first_use is True and pinned:
        c.add(
            "console.trust_on_first_use",
            "true while the host key is pinned (known_hosts or host_key_fingerprint); remove one: a pin is checked, "
            "trust on first use accepts any key",
        )
    if con.mode != "real":
        return
    c.required(
        con.admin_password,
        "console.admin_password",
        "add it as env:NAME or file:PATH: the SSH login as admin and the wizards' start prompts need it",
    )
    c.need(
        pinned or con.trust_on_first_use is True,
        "console.host_key_fingerprint",
        "missing (got nothing); the console gets the admin password only once its host key is verified: add "
        'host_key_fingerprint = "SHA256:...", or known_hosts = "<file>", or (weaker) trust_on_first_use = true',
    )


def check_provisioning(d: Deployment, c: Check) -> None:
    """Each Conferencing Node's provisioning interface: an https URL, and its certificate verified."""
    api = d.pexip_api
    verified = api is None or api.mode != "real" or bool(api.provisioning_ca_file or api.provisioning_trust_first_use)
    for i, n in enumerate(d.conferencing or ()):
        path = f"conferencing[{i}]"
        if isinstance(n.provisioning_url, str):
            c.url(n.provisioning_url, "real", f"{path}.provisioning_url")
        if isinstance(n.provisioning_thumbprint, str):
            c.sha256_pin(n.provisioning_thumbprint, f"{path}.provisioning_thumbprint")
        elif not verified:
            c.add(
                f"{path}.provisioning_thumbprint",
                "missing (got nothing); its bootstrap file (password hashes) goes only to a verified node: add "
                'provisioning_thumbprint = "sha256:AA:BB:..." of the certificate its provisioning interface presents, '
                "or set pexip_api.provisioning_ca_file, or (weaker) pexip_api.provisioning_trust_first_use = true",
            )
