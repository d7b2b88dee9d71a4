"""The process of the lab's network simulators: ``python -m orchestrator.lab._serve LAB_DIR`` (see
:mod:`orchestrator.lab._servers`, which starts and stops it)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tomllib
from pathlib import Path

from orchestrator.lab._files import write_private
from orchestrator.lab._servers import _MODULE, REBOOT_S, SERVERS_CONFIG, SERVERS_FILE

__all__ = ["main"]


async def _serve(lab_dir: Path) -> None:
    # Imported here: `lab status` must not load the simulated world.
    from adapters.base import Directory
    from adapters.sim.ldap import SimDirectory
    from adapters.sim.servers._pexip_auth import ClientIdentity, make_client_identity
    from adapters.sim.servers.pexip_http import PexipServer
    from adapters.sim.servers.provisioning_http import ProvisioningServers
    from adapters.sim.world import SimWorld
    from config.load import load_deployment

    deployment = load_deployment(lab_dir / SERVERS_CONFIG)
    world = SimWorld.open(deployment.simulation.world, shared=True)
    ldap, api_spec = deployment.ldap, deployment.pexip_api
    client = make_client_identity(lab_dir / "pexip-client", ldap.verify_user, ldap.client_certificate)
    lab_ca = lab_dir / "pki" / "vcsim-ca.pem"  # orchestrator.lab._pki.make_test_pki's
    if api_spec.client_cert and Path(api_spec.client_cert).is_file() and lab_ca.is_file():
        # The lab CA issued the orchestrator's client certificate (with the slapd): the Manager trusts that CA.
        key_ref = str(tomllib.loads((lab_dir / SERVERS_CONFIG).read_text())["pexip_api"]["client_key"])
        client = ClientIdentity(lab_ca, Path(api_spec.client_cert), Path(key_ref.removeprefix("file:")))
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
                world, deployment, directory, lab_dir / "pexip", client_ca_file=client.ca_file, reboot_s=REBOOT_S
            ) as api,
            ProvisioningServers(world, deployment, lab_dir / "provisioning") as nodes,
        ):
            info = {
                "pid": os.getpid(),
                "pexip_api": {
                    "url": api.url,
                    "ca_file": str(api.cert_file),
                    "client_cert": str(client.cert_file),
                    "client_key": str(client.key_file),
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
