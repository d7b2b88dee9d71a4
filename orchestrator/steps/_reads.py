"""The Manager's API as one step attempt reads it: each object looked up once until something is written.

A step attempt reads the same objects more than once before it changes anything: ``install_certificate``
looks up the node's certificate to observe, again to open its gate (is the CA's answer the certificate
already installed?), and its CSR to open the gate and again to apply (issue #11: 41 Manager requests per
Conferencing Node, 3 of them repeats). Before anything is written those reads cannot answer otherwise, so
:class:`AttemptReads` answers a repeat from memory. Any write through it forgets everything (a PATCH of a
CSR creates a certificate: what a write changes is the Manager's to say, not ours), and
:func:`orchestrator.steps.base.execute` makes it forget before the verifying observe: verify reads the
world after apply, as the check that the change took. A step whose ``apply`` changed the Manager another
way (its console) before it reads the API calls ``ctx.read_afresh()`` first (none does today).

What is never answered from memory: ``status`` (a node syncs by itself, not by our writes) and
``verify_login`` (a proof is a login made now).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from adapters.base import Created, PexipApi

__all__ = ["AttemptReads"]


class AttemptReads:
    """A :class:`adapters.base.PexipApi` over another, whose ``list_objects`` and ``get`` answers are kept
    until the next write or :meth:`forget`. One per step attempt (``StepContext.pexip``), never shared.

    The objects handed out are the ones read, not copies: steps treat what they observe as read-only
    (``diff``, ``apply`` and the gate already share the ``observed`` value).
    """

    def __init__(self, api: PexipApi) -> None:
        self.api = api  # the run's adapter: the real client or the twin
        self._kept: dict[tuple[str, str, str], Any] = {}

    def forget(self) -> None:
        """Read the Manager afresh from now on (before verify; after a change made another way)."""
        self._kept.clear()

    async def list_objects(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        key = ("list", resource, repr(filters))  # the call's own order: another order only misses
        if key not in self._kept:
            self._kept[key] = await self.api.list_objects(resource, **filters)
        return list(self._kept[key])

    async def get(self, uri: str) -> dict[str, Any]:
        key = ("get", uri, "")
        if key not in self._kept:
            self._kept[key] = await self.api.get(uri)
        found: dict[str, Any] = self._kept[key]
        return found

    # Not coroutines of their own: the adapter's is handed back, one frame less on every request (issue #11).
    # One attempt is one task, so nothing reads between the forgetting and the write's answer.
    def create(self, resource: str, fields: dict[str, Any]) -> Coroutine[Any, Any, Created]:
        self._kept.clear()
        return self.api.create(resource, fields)

    def patch(self, uri: str, fields: dict[str, Any]) -> Coroutine[Any, Any, None]:
        self._kept.clear()
        return self.api.patch(uri, fields)

    def delete(self, uri: str) -> Coroutine[Any, Any, None]:
        self._kept.clear()
        return self.api.delete(uri)

    def status(self, resource: str, **filters: Any) -> Coroutine[Any, Any, list[dict[str, Any]]]:
        return self.api.status(resource, **filters)

    def verify_login(self, *, use_client_cert: bool) -> Coroutine[Any, Any, str]:
        return self.api.verify_login(use_client_cert=use_client_cert)

    async def aclose(self) -> None:
        """Nothing to close: the adapter belongs to the run, not to one attempt."""
