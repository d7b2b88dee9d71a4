"""The real node console: SSH to the Management Node, its installation wizard and ``securitywizard``."""

from adapters.console.client import SshConsole

__all__ = ["SshConsole"]
