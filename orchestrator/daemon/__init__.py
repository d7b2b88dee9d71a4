"""``orchestrator daemon``: a level-triggered reconciler over the engine, its inputs, and systemd's protocol.

- ``_reconciler``: an event names a node; each reconcile re-reads the deployment and the
  journal and drives the node with the engine's per-node drive; backoff, reloads, resync.
- ``_queue``: the de-duplicating per-node work queue.
- ``_inputs``: the deployment file (``watchfiles``), vCenter's inventory watch, the resync
  period, the leases' heartbeat.
- ``_notify``: ``sd_notify`` readiness and watchdog over a plain socket.
- ``_service``: all of it with the HTTP API in one process, until SIGTERM.
"""

from orchestrator.daemon._notify import notify, watchdog_period
from orchestrator.daemon._queue import NodeQueue
from orchestrator.daemon._reconciler import Generation, Reconciler
from orchestrator.daemon._service import run_daemon

__all__ = ["run_daemon", "Reconciler", "Generation", "NodeQueue", "notify", "watchdog_period"]
