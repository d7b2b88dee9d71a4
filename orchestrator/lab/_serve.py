"""The process of the lab's network simulators: ``python -m orchestrator.lab._serve LAB_DIR`` (see
:mod:`orchestrator.lab._servers`, which starts and stops it).

Every port is kept in ``<lab>/ports.json`` and asked for again by the next process, so that a restarted
lab answers where its deployment file says (a kept port another program took meanwhile: a free one, and
``lab up`` writes the deployment file anew).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestrator.lab._files import write_private
from orchestrator.lab._pki import Pki, issue_client_certificate
from orchestrator.lab._servers import _MODULE, CONSOLE_PASSWORD, REBOOT_S, SERVERS_CONFIG, SERVERS_FILE

__all__ = ["main"]

_PORTS = "ports.json"


def _kept_ports(lab_dir: Path) -> dict[str, Any]:
    path = lab_dir / _PORTS
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def _if_free(port: Any, host: str = "127.0.0.1") -> int:
    """``port`` when it can be bound on ``host`` now, else 0 (any free one)."""
    if not isinstance(port, int) or port <= 0:
        return 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return 0
    return port


async def _serve(lab_dir: Path) -> None:
    # Imported here: `lab status` must not load the simulated world.
    from adapters.base import Directory
    from adapters.sim.ldap import SimDirectory
    from adapters.sim.servers._pexip_auth import ClientIdentity, make_client_identity
    from adapters.sim.servers.console_ssh import HOST, ConsoleServer
    from adapters.sim.servers.pexip_http import PexipServer
    from adapters.sim.servers.provisioning_http import ProvisioningServers
    from adapters.sim.world import SimWorld
    from config.load import load_deployment

    deployment = load_deployment(lab_dir / SERVERS_CONFIG)
    world = SimWorld.open(deployment.simulation.world, shared=True)
    ldap, api_spec = deployment.ldap, deployment.pexip_api
    lab_ca = lab_dir / "pki" / "vcsim-ca.pem"  # orchestrator.lab._pki.make_test_pki's
    if api_spec.client_cert and Path(api_spec.client_cert).is_file() and lab_ca.is_file():
        # The lab CA issued the orchestrator's client certificate (with the slapd): the Manager trusts that CA.
        key_ref = str(tomllib.loads((lab_dir / SERVERS_CONFIG).read_text())["pexip_api"]["client_key"])
        client = ClientIdentity(lab_ca, Path(api_spec.client_cert), Path(key_ref.removeprefix("file:")))
    elif lab_ca.is_file() and lab_ca.with_suffix(".key").is_file():
        # No slapd: the certificate is still the lab CA's, since pki.ca_chain (all the Manager trusts) is that CA.
        made = lab_dir / "pexip-client"
        client = ClientIdentity(lab_ca, made / "client.pem", made / "client.key")
        pki = Pki(lab_ca, lab_ca, lab_ca, lab_ca.with_suffix(".key"))  # only the CA's files are used
        issue_client_certificate(
            pki, ldap.verify_user, ldap.client_certificate, client.cert_file, client.key_file, domain="lab.example.com"
        )
    else:
        client = make_client_identity(lab_dir / "pexip-client", ldap.verify_user, ldap.client_certificate)
    kept = _kept_ports(lab_dir)
    manager = deployment.management
    console_password = (lab_dir / "secrets" / CONSOLE_PASSWORD).read_text().strip()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        directory: Directory = SimDirectory(world, deployment)
        if ldap.mode == "real":  # the lab's slapd: the Manager's LDAP logins ask it, as the runs do
            from adapters.ldap import LdapDirectory

            directory = LdapDirectory.from_deployment(deployment)
        async with (
            PexipServer(
                world,
                deployment,
                directory,
                lab_dir / "pexip",
                client_ca_file=client.ca_file,
                reboot_s=REBOOT_S,
                port=_if_free(kept.get("pexip_api")),
            ) as api,
            ProvisioningServers(
                world,
                deployment,
                lab_dir / "provisioning",
                ports={n: _if_free(p) for n, p in (kept.get("provisioning") or {}).items()},
            ) as nodes,
            # Before the installation wizard the console answers at 127.0.0.1 (the lab's "DHCP" address,
            # console.address), afterwards at the Manager's static address: both on the same port.
            ConsoleServer(
                world,
                deployment,
                console_password,
                reboot_s=REBOOT_S,
                static_host=manager.address,
                key_file=lab_dir / "console" / "host_key",
                port=_if_free(_if_free(kept.get("console")), manager.address),
            ) as console,
        ):
            ports = {
                "pexip_api": int(api.url.rsplit(":", 1)[1]),
                "console": console.port,
                "provisioning": {n.name: urlsplit(nodes.url(n.name)).port for n in deployment.conferencing},
            }
            write_private(lab_dir / _PORTS, json.dumps(ports, indent=2).encode())
            info = {
                "pid": os.getpid(),
                "pexip_api": {
                    "url": api.url,
                    "ca_file": str(api.cert_file),
                    "client_cert": str(client.cert_file),
                    "client_key": str(client.key_file),
                },
                "console": {
                    "address": HOST,  # before the installation wizard; afterwards the static address
                    "static_address": manager.address,
                    "port": console.port,
                    "host_key_fingerprint": console.fingerprint,
                    "public_key": console.public_key,
                },
                "provisioning": {
                    n.name: {"url": nodes.url(n.name), "thumbprint": nodes.thumbprint(n.name)}
                    for n in deployment.conferencing
                },
            }
            write_private(lab_dir / SERVERS_FILE, json.dumps(info, indent=2).encode())
            await stop.wait()
    finally:
        await world.aclose()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: python -m {_MODULE} LAB_DIR", file=sys.stderr)
        return 2
    asyncio.run(_serve(Path(argv[0]).resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
