"""The lab's directory: a slapd (StartTLS, the lab CA) holding what the lab deployment's ``[ldap]`` names,
and the orchestrator's client certificate for its LDAP identity, issued by the lab CA.

``lab up`` writes the deployment file with ``ldap.mode = "real"`` at a port chosen here, then
:func:`start_lab_directory` reads that file's ``[ldap]`` table (the service account, the verify
user, the mapped groups, the passwords from ``<lab>/secrets``), loads a new slapd with them and
starts it as a daemon; the client certificate and key go where ``pexip_api.client_cert`` and
``client_key`` point, with the identity (``ldap.verify_user``) in the CN or the UPN per
``ldap.client_certificate``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from config.model import LdapSpec, RoleMapping
from config.secrets import Secret
from orchestrator.lab._pki import Pki, issue_client_certificate
from orchestrator.lab._slapd import Slapd, is_our_slapd, prepare_slapd, stop_slapd

__all__ = ["lab_ldap_spec", "ldap_status", "restart_lab_directory", "start_lab_directory", "stop_lab_directory"]

_DOMAIN = "lab.example.com"  # the lab's DNS domain: the UPN's


def lab_ldap_spec(table: dict[str, Any]) -> LdapSpec:
    """The ``[ldap]`` table of the lab's deployment file as the model (only what slapd is loaded with)."""
    return LdapSpec(
        mode="real",
        server=str(table["server"]),
        base_dn=str(table["base_dn"]),
        bind_username=str(table["bind_username"]),
        bind_password=Secret(table["bind_password"]),
        role_mappings=tuple(
            RoleMapping(name=m["name"], group_dn=m["group_dn"], roles=tuple(m["roles"]))
            for m in table.get("role_mappings", [])
        ),
        user_search_dn=str(table.get("user_search_dn", "")),
        group_search_dn=str(table.get("group_search_dn", "")),
        client_certificate=table.get("client_certificate", "CN"),
        verify_user=str(table["verify_user"]),
        verify_password=Secret(table["verify_password"]),
    )


def start_lab_directory(lab_dir: Path, config: Path, pki: Pki) -> dict[str, Any]:
    """Issue the orchestrator's client certificate and start the lab's slapd for the deployment ``config``.

    Returns:
        the state ``lab status`` reports under ``ldap`` (url, bind_dn, password_ref, ca_file, pid, ...).

    Raises:
        LabError: slapd is not installed or did not start.
    """
    data = tomllib.loads(config.read_text())
    table, api = data["ldap"], data["pexip_api"]
    ldap = lab_ldap_spec(table)
    # The orchestrator's identity: ldap.verify_user, in the CN or the UPN as the Manager will look for it.
    key_ref = str(api["client_key"])
    issue_client_certificate(
        pki,
        ldap.verify_user,
        ldap.client_certificate,
        Path(api["client_cert"]),
        Path(key_ref.removeprefix("file:")),
        domain=_DOMAIN,
    )
    slapd = prepare_slapd(Path(lab_dir) / "slapd", ldap, pki, port=int(table["port"]))
    slapd.start(detach=True)
    return {
        "url": slapd.url,
        "ldaps_url": slapd.ldaps_url,
        "bind_dn": ldap.bind_username,
        "password_ref": table["bind_password"],
        "ca_file": str(pki.ca_file),
        "base_dn": ldap.base_dn,
        "user": ldap.verify_user,
        "client_cert": api["client_cert"],
        "pid": slapd.pid,
        # To start the same server again (restart_lab_directory): its files and ports.
        "config_dir": slapd.config_dir,
        "port": slapd.port,
        "ldaps_port": slapd.ldaps_port,
    }


def restart_lab_directory(state: dict[str, Any]) -> dict[str, Any]:
    """Start the lab's slapd again, as it was (same ports, same data: the deployment file still holds);
    the state with its new pid.

    Raises:
        LabError: it did not start.
    """
    config_dir = Path(state["config_dir"])
    directory = config_dir.parent
    slapd = Slapd(
        int(state["port"]),
        state.get("ldaps_port"),
        Path(state["ca_file"]),
        str(state["base_dn"]),
        "",
        "",
        str(config_dir),
        directory / "slapd.log",
        directory / "run" / "slapd.pid",
    )
    slapd.start(detach=True)
    return {**state, "pid": slapd.pid}


def ldap_status(state: dict[str, Any] | None) -> dict[str, Any]:
    """What ``lab status`` shows of the lab's slapd (every key None, running False: none started)."""
    state = state or {}
    keys = ("url", "ldaps_url", "bind_dn", "password_ref", "ca_file", "base_dn", "user", "client_cert", "pid")
    return {**{k: state.get(k) for k in keys}, "running": is_our_slapd(state.get("pid"))}


def stop_lab_directory(state: dict[str, Any] | None) -> bool:
    """Stop the lab's slapd; whether one was running."""
    pid = (state or {}).get("pid")
    running = is_our_slapd(pid)
    if pid:
        stop_slapd(int(pid))
    return running
