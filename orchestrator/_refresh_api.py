"""``status --refresh``: where each node stands by the journal, and what the world says of its completed steps.

Read-only: the journal is opened read-only and the steps only observe (``orchestrator._refresh``);
nothing is journaled and nothing is changed. ``run`` acts on the same drift (``orchestrator._drift``).
"""

from __future__ import annotations

from typing import Any

from orchestrator._journal_api import status
from orchestrator._refresh import refresh
from orchestrator._session import SessionSettings, open_session

__all__ = ["refreshed_status"]


async def refreshed_status(settings: SessionSettings, node: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The journal's path and the ``status`` rows, each with ``drift``: the completed steps that differ.

    ``drift`` is a list of :meth:`orchestrator._refresh.Drift.as_dict` (empty: the world is as journaled).
    """
    async with open_session(settings, journal="readonly") as session:
        assert session.journal is not None  # "readonly" sessions always have one
        rows = status(session.journal, node)
        found = await refresh(
            session.deployment, session.journal.nodes(), session.systems, nodes=[node] if node else None
        )
        for row in rows:
            row["drift"] = [d.as_dict() for d in found.get(row["node"], [])]
        return str(session.journal_path), rows
