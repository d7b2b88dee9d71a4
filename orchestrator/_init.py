"""``orchestrator init``: a starter deployment file that ``validate`` accepts.

Written as data with ``tomli_w`` (any value reads back exactly as given); the comments are a
header prepended as text. ``sim``: every system simulated, secrets made at random in
``secrets/`` beside the file, runnable with ``orchestrator run`` at once. Otherwise: the
shipped ``config/example.toml`` (real systems, ``env:`` secret references), with a header
listing what to fill in for a real site.
"""

from __future__ import annotations

import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from config.errors import ConfigError

__all__ = ["Initialized", "init_config", "EXAMPLE"]

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "example.toml"

_SIM_HEADER = (
    "# Written by `orchestrator init --sim`: every system simulated (no packet leaves this host).\n"
    "# Run it at once: `orchestrator -c {path} run`; it stops at the security-wizard approval gate\n"
    "# (exit 3) as a real site does: `approve pexip-mgmt security_wizard --by WHO`, then `resume --all`.\n"
    "# Secrets are random files in secrets/ (0600).\n"
    "# For a real site: `orchestrator init` (without --sim) writes the real placeholders.\n\n"
)
_REAL_HEADER = (
    "# Written by `orchestrator init`: a real site's deployment, to be edited before a run.\n"
    "# Fill in, then check with `orchestrator validate` (and `validate --offline` before secrets are set):\n"
    "{todo}\n"
    "# Every field: `orchestrator config reference` (or docs/configuration.md); its schema: `config schema`.\n\n"
)
# What a real site must edit, in the order of the file.
TODO = (
    "deployment.name: your deployment's name (it names the journal's records)",
    "vcenter.url, vcenter.user, vcenter.ca_file, vcenter.datacenter, vcenter.hosts: your vCenter and ESXi hosts",
    "ova.management, ova.conferencing: the Pexip Infinity OVA files",
    "management, conferencing: each node's name, address, host, VLAN and size",
    "pexip_api, console, pki, ldap: your Management Node, CA and directory (modes: real where built)",
    "network, snmp, global_settings: your NTP (with keys), DNS, syslog, SNMPv3, banner",
    "every env:NAME secret: set the environment variable NAME before `run` (values are never shown)",
)
_SECRETS = (
    "vcenter-password",
    "bios-password",
    "pexip-admin-password",
    "pexip-bootstrap-key",
    "ntp-key-1",
    "ntp-key-2",
    "snmp-auth-password",
    "snmp-priv-password",
    "ldap-bind-password",
    "ldap-verify-password",
)


@dataclass(frozen=True)
class Initialized:
    """What ``init`` wrote: the deployment file, the secret files (``sim``), and what to fill in."""

    path: Path
    sim: bool
    secret_files: tuple[Path, ...]
    todo: tuple[str, ...]


def _sim_data(directory: Path) -> dict[str, Any]:
    from orchestrator.lab._config import lab_config
    from orchestrator.lab._vcsim import Vcsim

    # Simulated systems open no file: the vCenter's CA and the OVAs are names only.
    unused = Path("/nonexistent")
    placeholder = Vcsim("https://vcenter.sim.invalid/sdk", "sim", "", unused, unused, 0, 0, unused, unused, unused)
    images = directory / "images"
    data = lab_config(
        directory,
        placeholder,
        management_ova=images / "Pexip_Infinity_pxMgr.ova",
        conferencing_ova=images / "Pexip_Infinity_ConfNode.ova",
        name="sim-starter",
    )
    data["vcenter"].pop("ca_file")
    data["vcenter"]["mode"] = "sim"
    data["pki"] = {"mode": "sim", "dn": data["pki"]["dn"]}  # the lab's CA is a file there is none of: simulated
    return data


def init_config(path: Path, *, sim: bool = False, force: bool = False) -> Initialized:
    """Write a starter deployment file at ``path``; refuses to replace one unless ``force``.

    Raises:
        ConfigError: ``path`` exists (and not ``force``), is a directory, or its directory is missing.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError([("PATH", f"{path} is a directory; give the file to write, e.g. {path}/orchestrator.toml")])
    if path.exists() and not force:
        raise ConfigError([("PATH", f"{path} exists; pass --force to replace it, or give another PATH")])
    if not path.parent.is_dir():
        raise ConfigError([("PATH", f"directory {path.parent} does not exist; create it or give another PATH")])
    directory = path.parent.resolve()
    written: list[Path] = []
    if sim:
        data = _sim_data(directory)
        secret_dir = directory / "secrets"
        secret_dir.mkdir(mode=0o700, exist_ok=True)
        from orchestrator.lab._files import write_private

        for name in _SECRETS:
            target = secret_dir / name
            if not target.is_file():
                write_private(target, secrets.token_urlsafe(32).encode())
            written.append(target)
        header = _SIM_HEADER.format(path=path)
        todo: tuple[str, ...] = ()
    else:
        data = tomllib.loads(EXAMPLE.read_text())
        header = _REAL_HEADER.format(todo="\n".join(f"#   - {line}" for line in TODO))
        todo = TODO
    path.write_text(header + tomli_w.dumps(data))
    return Initialized(path, sim, tuple(written), todo)
