"""Helpers shared by the journal tests (a uniquely named module, not conftest, so that
other test folders' conftest files cannot shadow it)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from journal import Journal  # noqa: E402

NODES = [
    ("mgr", "management", "deployed"),
    ("conf-1", "conferencing", "deployed"),
    ("conf-2", "conferencing", "deployed"),
]


def walk(j: Journal, node: str, states: list[str], step: str = "work") -> None:
    """Move ``node`` through ``states``, one committed step each."""
    current = j.node(node)
    assert current is not None
    previous = current.state
    for state in states:
        j.record(
            node=node,
            kind="step_committed",
            step=step,
            attempt=1,
            key=f"{node}/{state}",
            from_state=previous,
            to_state=state,
            payload={"observed": {"state": state}},
        )
        previous = state


def spec_hash(prev_hash: str, event: dict[str, Any]) -> str:
    """The chain hash computed from the written spec, independently of journal._chain."""
    content = {
        name: event.get(name, {})
        for name in (
            "seq",
            "at",
            "node",
            "kind",
            "step",
            "attempt",
            "key",
            "from_state",
            "to_state",
            "actor",
            "payload",
            "sets",
        )
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()
