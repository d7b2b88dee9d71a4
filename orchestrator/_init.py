"""``orchestrator init``: a starter deployment file that ``validate`` accepts.

Written as data with ``tomli_w`` (any value reads back exactly as given); the comments are a
header prepended as text. ``sim``: every system simulated, secrets made at random in
``secrets/`` beside the file, runnable with ``orchestrator run`` at once. ``lab``: the deployment
file of the running lab (``orchestrator lab up``), whose real clients talk to the lab's simulators
on 127.0.0.1; refused while no lab runs (the ports are the lab's, chosen at ``lab up``). Otherwise: the
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
_LAB_HEADER = (
    "# Written by `orchestrator init --lab` from the lab in {lab}: vCenter (vcsim), LDAP (slapd) and the\n"
    "# Management API are the lab's simulators on 127.0.0.1, driven by the real clients over TLS with the\n"
    "# lab's test CA; the console and the CA are simulated. Lab test credentials only (file: secrets in the lab).\n"
    "# Run it as written while that lab runs: `orchestrator -c {path} run` stops at the security-wizard\n"
    "# gate (exit 3): `orchestrator -c {path} approve {manager} security_wizard --by WHO`, then `resume --all`.\n"
    "# Its ports are the lab's: after another `lab up`, write it again with `orchestrator init --lab --force`.\n"
    "# For a real site, edit (or start from `orchestrator init`):\n"
    "{todo}\n\n"
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
# The lab's secrets are files it made: a real site gives its own references instead.
_LAB_TODO = (
    *TODO[:-1],
    "every secret (file: in the lab): your own env:NAME or file:PATH references (values are never shown)",
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
    lab: Path | None = None  # the lab whose deployment file it is (``--lab``)


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


def _lab_data(lab_dir: Path) -> dict[str, Any]:
    """The running lab's deployment file as data; ConfigError naming ``--lab`` when no lab runs there."""
    from orchestrator.lab import lab_status

    status = lab_status(lab_dir)
    if status["config"] is None or not Path(status["config"]).is_file():
        raise ConfigError(
            [("--lab", f"no lab in {lab_dir}; start one with `orchestrator lab up` first (or use `init --sim`)")]
        )
    stopped = [name for name in ("vcenter", "ldap", "pexip_api") if not status[name].get("running")]
    if stopped:
        raise ConfigError(
            [("--lab", f"the lab in {lab_dir} is not running ({', '.join(stopped)} stopped); `orchestrator lab up`")]
        )
    data: dict[str, Any] = tomllib.loads(Path(status["config"]).read_text())
    return data


def init_config(path: Path, *, sim: bool = False, lab: Path | None = None, force: bool = False) -> Initialized:
    """Write a starter deployment file at ``path``; refuses to replace one unless ``force``.

    Args:
        sim: every system simulated, secrets made beside the file.
        lab: the directory of a running lab (``orchestrator lab up``): its deployment file, with comments.

    Raises:
        ConfigError: ``path`` exists (and not ``force``), is a directory, or its directory is missing;
            ``sim`` with ``lab``; no lab runs in ``lab``.
    """
    path = Path(path)
    if sim and lab is not None:
        raise ConfigError([("--lab", "give --sim or --lab, not both")])
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
    elif lab is not None:
        data = _lab_data(Path(lab).resolve())
        header = _LAB_HEADER.format(
            lab=Path(lab).resolve(),
            path=path,
            manager=data["management"]["name"],
            todo="\n".join(f"#   - {line}" for line in _LAB_TODO),
        )
        todo = _LAB_TODO
    else:
        data = tomllib.loads(EXAMPLE.read_text())
        header = _REAL_HEADER.format(todo="\n".join(f"#   - {line}" for line in TODO))
        todo = TODO
    path.write_text(header + tomli_w.dumps(data))
    return Initialized(path, sim, tuple(written), todo, Path(lab).resolve() if lab is not None else None)
