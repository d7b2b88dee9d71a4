"""The lab's SSH console server over a world, and the real client pinned to its host key (milliseconds)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from adapters.console import SshConsole
from adapters.sim.servers.console_ssh import ConsoleServer
from adapters.sim.world import SimWorld
from config.model import ConsoleSpec, Deployment
from config.secrets import Secret

__all__ = ["CONSOLE_PASSWORD", "ssh_console", "real_console"]

CONSOLE_PASSWORD = "console-Passw0rd-1"


def real_console(deployment: Deployment, server: ConsoleServer, tmp_path: Path, **spec: Any) -> Deployment:
    """``deployment`` with ``[console]`` real, at ``server``, pinned to its fingerprint unless ``spec`` says."""
    secret = tmp_path / "console-password"
    secret.write_text(CONSOLE_PASSWORD + "\n")
    fields: dict[str, Any] = {"host_key_fingerprint": server.fingerprint, "address": None, **spec}
    console: ConsoleSpec = dataclasses.replace(
        deployment.console,
        mode="real",
        port=server.port,
        admin_password=Secret(f"file:{secret}"),
        **fields,
    )
    # The Management Node answers on the loopback address the server listens on.
    management = dataclasses.replace(deployment.management, address=server.host)
    return dataclasses.replace(deployment, console=console, management=management)


@contextlib.asynccontextmanager
async def ssh_console(
    world: SimWorld, deployment: Deployment, tmp_path: Path, **server_options: Any
) -> AsyncIterator[tuple[ConsoleServer, SshConsole]]:
    """The SSH console server over ``world`` (reboot windows of 50 ms) and the real client."""
    options = {"reboot_s": 0.05, **server_options}
    async with ConsoleServer(world, deployment, CONSOLE_PASSWORD, **options) as server:
        yield server, SshConsole(real_console(deployment, server, tmp_path), poll_s=0.02, timeout_s=5)
