"""The local lab: simulators on 127.0.0.1 and a deployment file that ``run`` uses against them.

The lab holds VMware's own vCenter simulator, vcsim, built from Debian's govmomi
sources by the project's Go ``main`` (``orchestrator/lab/vcsim/main.go``, package data), served
over TLS with the lab's own test CA. ``lab_up`` builds it when needed, starts it on a free loopback port,
shapes its inventory the way the guide wants a host (a second vSwitch for the VMs,
portgroups with VLANs, a VM folder), writes test OVAs, secrets and the deployment file,
and remembers all of it in ``<lab>/state.json`` for ``lab_status`` and ``lab_down``. Beside it
an OpenLDAP slapd (``_slapd``, ``_directory``) on a free loopback port, StartTLS and ldaps with
the lab CA, loaded with the service account, the verify user and the groups the deployment
file names (``ldap.mode = "real"``), and the orchestrator's client certificate for that
identity, issued by the lab CA where ``pexip_api.client_cert`` and ``client_key`` point.
And one process of the project's network simulators (``_servers``: the Management API server and each
Conferencing Node's provisioning interface, over the lab's world shared with the runs), which the
deployment file's ``pexip_api`` (real mode) and ``provisioning_url``/``provisioning_thumbprint`` point at.

Needs the Debian packages ``golang-go``, ``golang-github-vmware-govmomi-dev``, ``slapd`` and ``ldap-utils``.

The parts, one module each, re-exported here: the test PKI (``_pki``), the test OVAs
(``_ova``), vcsim's build and process (``_vcsim``), its inventory (``_inventory``) and the
deployment file (``_config``). ``build_vcsim``, ``start_vcsim``, ``prepare_inventory``,
``make_test_pki``, ``make_test_ova`` and ``write_lab_config`` are what the tests use to
run their own vcsim instances.

Example::

    status = lab_up(Path(".lab"))
    print(status["vcenter"]["url"], status["config"])
    lab_down(Path(".lab"), reset=True)  # reset: also the lab's journal and world

``lab_up(fresh=True)`` and ``lab_down(reset=True)`` make a demo repeatable: the next lab starts
with a journal that knows nothing (built binaries, PKI and OVAs stay).
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

from orchestrator.lab._config import lab_config, repoint_lab_config, write_lab_config
from orchestrator.lab._directory import ldap_status, restart_lab_directory, start_lab_directory, stop_lab_directory
from orchestrator.lab._files import write_private
from orchestrator.lab._inventory import LAB_HOSTS, prepare_inventory
from orchestrator.lab._ova import make_test_ova, stream_vmdk
from orchestrator.lab._pki import Pki, issue_client_certificate, make_test_pki, thumbprint_of
from orchestrator.lab._servers import is_our_servers, start_servers, stop_servers
from orchestrator.lab._slapd import free_port
from orchestrator.lab._vcsim import (
    REPO,
    VCSIM_USER,
    LabError,
    Vcsim,
    build_vcsim,
    go_available,
    is_our_vcsim,
    start_vcsim,
    stop_pid,
)

__all__ = [
    "LAB_HOSTS",
    "REPO",
    "VCSIM_USER",
    "LabError",
    "Pki",
    "Vcsim",
    "build_vcsim",
    "go_available",
    "issue_client_certificate",
    "lab_config",
    "lab_down",
    "lab_reset",
    "lab_status",
    "lab_up",
    "make_test_ova",
    "make_test_pki",
    "prepare_inventory",
    "repoint_lab_config",
    "start_vcsim",
    "stream_vmdk",
    "thumbprint_of",
    "write_lab_config",
]


def _state_file(lab_dir: Path) -> Path:
    return Path(lab_dir).resolve() / "state.json"


def lab_status(lab_dir: Path = Path(".lab")) -> dict[str, Any]:
    """Each simulator's ``url``, ``user``, ``password`` (lab test credentials), ``ca_file``,
    ``pid`` and ``running``; ``ldap``: the lab's slapd (``url``, ``bind_dn``, ``password_ref``,
    ``ca_file``, ...); ``pexip_api``: the network simulators' Management API (``url``, ``address``, ``user``,
    ``password``, ``ca_file``, ``pid``, ``running``); ``console``: the Management Node's SSH console (``url``
    ``ssh://127.0.0.1:PORT``, ``address`` before and ``static_address`` after the installation wizard,
    ``user``, ``password``, ``host_key_fingerprint``, ``pid``, ``running``); ``provisioning``: each
    Conferencing Node's interface URL; and ``config``: the deployment file for ``run`` (``None``: no lab there)."""
    state_file = _state_file(lab_dir)
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    vcenter = state.get("vcenter") or {}
    api = state.get("pexip_api") or {}
    console = state.get("console") or {}
    return {
        "vcenter": {
            "url": vcenter.get("url"),
            "user": vcenter.get("user"),
            "password": vcenter.get("password"),
            "ca_file": vcenter.get("ca_file"),
            "pid": vcenter.get("pid"),
            "running": is_our_vcsim(vcenter.get("pid")),
        },
        "ldap": ldap_status(state.get("ldap")),
        "pexip_api": {
            "url": api.get("url"),
            "address": api.get("address"),
            "user": api.get("user"),
            "password": api.get("password"),
            "ca_file": api.get("ca_file"),
            "pid": api.get("pid"),
            "running": is_our_servers(api.get("pid")),
        },
        "console": {
            "url": console.get("url"),
            "address": console.get("address"),
            "static_address": console.get("static_address"),
            "user": console.get("user"),
            "password": console.get("password"),
            "host_key_fingerprint": console.get("host_key_fingerprint"),
            "pid": api.get("pid"),  # the same process as the Management API's
            "running": is_our_servers(api.get("pid")),
        },
        "provisioning": state.get("provisioning") or {},
        "config": state.get("config"),
    }


def _run_files(lab_dir: Path) -> list[Path]:
    """The lab's journal and simulated world with their SQLite companions (what ``reset`` removes)."""
    lab_dir = Path(lab_dir).resolve()
    journal, world = lab_dir / "journal.sqlite", lab_dir / "world.sqlite"
    config = lab_dir / "orchestrator.toml"
    if config.is_file():  # the paths the lab's deployment file gives, if it changed them
        data = tomllib.loads(config.read_text())
        journal = Path(data.get("journal", {}).get("path", journal))
        world = Path(data.get("simulation", {}).get("world", world))
    return [p for base in (journal, world) for p in sorted(base.parent.glob(f"{base.name}*")) if p.exists()]


def lab_reset(lab_dir: Path = Path(".lab")) -> list[str]:
    """Remove the lab's journal and world (and its checkpoints, keys beside them); the paths removed."""
    removed = []
    for path in _run_files(lab_dir):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(str(path))
    return removed


def lab_up(lab_dir: Path = Path(".lab"), *, fresh: bool = False) -> dict[str, Any]:
    """Build and start the lab (once: a running lab is left as it is); its status.

    Args:
        fresh: stop a running lab and remove its journal and world first (``lab down --reset``).

    Raises:
        LabError: vcsim or slapd cannot be built or started.
    """
    lab_dir = Path(lab_dir).resolve()
    if fresh:
        lab_down(lab_dir, reset=True)
    status = lab_status(lab_dir)
    if status["vcenter"]["running"] and status["ldap"]["running"] and status["pexip_api"]["running"]:
        return status
    state = json.loads(_state_file(lab_dir).read_text()) if _state_file(lab_dir).is_file() else {}
    if status["vcenter"]["running"] and state.get("ldap") and state.get("pexip_api"):
        # vcsim up, slapd or the network simulators stopped: the same ones again (ports, data and pins kept)
        if not status["ldap"]["running"]:
            state["ldap"] = restart_lab_directory(state["ldap"])
        if not status["pexip_api"]["running"]:
            again = _start_servers(lab_dir)
            state["pexip_api"]["pid"] = again["pid"]
            if _servers_moved(state, again):  # a kept port was taken meanwhile: the file follows the servers
                moved = repoint_lab_config(Path(state["config"]), again)
                state.update(_servers_state(again, moved, state["pexip_api"]["password"]))
        write_private(_state_file(lab_dir), json.dumps(state, indent=2).encode())
        return lab_status(lab_dir)
    if status["vcenter"]["running"] or status["ldap"]["running"] or status["pexip_api"]["running"]:
        lab_down(lab_dir)  # half a lab (vcsim died): start all anew, the world and pins are kept
    lab_dir.mkdir(parents=True, exist_ok=True)
    pki = make_test_pki(lab_dir / "pki")
    binary = build_vcsim(lab_dir)
    workdir = lab_dir / "vcsim"
    shutil.rmtree(workdir / "tmp", ignore_errors=True)  # datastores of an earlier, killed run
    vc = start_vcsim(workdir, binary=binary, pki=pki, detach=True)
    directory: dict[str, Any] | None = None
    servers: dict[str, Any] = {}
    try:
        prepare_inventory(vc)
        slapd_port = free_port()
        config = write_lab_config(lab_dir, vc, slapd_port=slapd_port)  # and servers.toml: what the simulators serve
        directory = start_lab_directory(lab_dir, config, pki)  # issues the client certificate the Manager trusts
        servers = _start_servers(lab_dir)
        config = write_lab_config(lab_dir, vc, slapd_port=slapd_port, servers=servers)
    except BaseException:
        if servers.get("pid"):
            stop_servers(servers["pid"])
        stop_lab_directory(directory)
        vc.stop()
        raise
    admin = tomllib.loads(config.read_text())["pexip_api"]
    password = Path(admin["admin_password"].removeprefix("file:")).read_text().strip()
    state = {
        "vcenter": {"url": vc.url, "user": vc.user, "password": vc.password, "ca_file": str(vc.ca_file), "pid": vc.pid},
        "ldap": directory,
        **_servers_state(servers, config, password),
        "config": str(config),
    }
    write_private(_state_file(lab_dir), json.dumps(state, indent=2).encode())
    return lab_status(lab_dir)


def _servers_state(servers: dict[str, Any], config: Path, admin_password: str) -> dict[str, Any]:
    """What ``state.json`` keeps of the network simulators (the lab's test passwords included)."""
    data = tomllib.loads(config.read_text())
    admin, console = data["pexip_api"], servers["console"]
    return {
        "pexip_api": {
            "url": admin["url"],
            "address": admin["address"],
            "user": admin["admin_user"],
            "password": admin_password,
            "ca_file": servers["pexip_api"]["ca_file"],
            "pid": servers["pid"],
        },
        "console": {
            "url": f"ssh://{console['address']}:{console['port']}",
            "address": console["address"],
            "static_address": console["static_address"],
            "user": "admin",
            "password": Path(data["console"]["admin_password"].removeprefix("file:")).read_text().strip(),
            "host_key_fingerprint": console["host_key_fingerprint"],
        },
        "provisioning": {name: node["url"] for name, node in servers["provisioning"].items()},
    }


def _servers_moved(state: dict[str, Any], servers: dict[str, Any]) -> bool:
    """The restarted simulators do not answer where the deployment file says (a kept port was taken)."""
    urls = {name: node["url"] for name, node in servers["provisioning"].items()}
    api_port = servers["pexip_api"]["url"].rsplit(":", 1)[1]
    return (
        state["pexip_api"]["url"].rsplit(":", 1)[1] != api_port
        or (state.get("console") or {}).get("url", "").rsplit(":", 1)[-1] != str(servers["console"]["port"])
        or state.get("provisioning") != urls
    )


def _start_servers(lab_dir: Path) -> dict[str, Any]:
    try:
        return start_servers(lab_dir)
    except RuntimeError as exc:
        raise LabError(str(exc)) from exc


def lab_down(lab_dir: Path = Path(".lab"), *, reset: bool = False) -> dict[str, Any]:
    """Stop the lab's simulators and forget their state (built binaries and PKI stay).

    Args:
        reset: also remove the lab's journal and world, so that the next lab starts anew.

    Returns:
        ``dir``, ``stopped`` (a running simulator was stopped), ``was_up`` and ``removed`` (paths).
    """
    lab_dir = Path(lab_dir).resolve()
    was_up = _state_file(lab_dir).is_file()
    status = lab_status(lab_dir)
    running = bool(status["vcenter"]["running"] or status["pexip_api"]["running"])
    if status["pexip_api"]["pid"]:  # first: the simulators hold the world open
        stop_servers(status["pexip_api"]["pid"])
    if status["vcenter"]["pid"]:
        stop_pid(status["vcenter"]["pid"], None, 5.0)
    running = stop_lab_directory(status["ldap"]) or running
    shutil.rmtree(lab_dir / "vcsim" / "tmp", ignore_errors=True)
    _state_file(lab_dir).unlink(missing_ok=True)
    removed = lab_reset(lab_dir) if reset else []
    return {"dir": str(lab_dir), "stopped": running, "was_up": was_up, "removed": removed}
