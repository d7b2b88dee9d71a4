"""The daemon's contingency power-off whatever order the last commits land in (fast, in-process, sim).

A node's model takes its new state when its transition is fired, before the commit journaling it
lands; every other node may end its reconcile in between. Here that window is held open on
purpose: the first Conferencing Node's ``ldap_authenticated`` commit waits until every other node
is built and its reconcile has ended. Before the fix that reconcile saw every model built, found
the journal not (the held row), powered nothing off and still marked the power-off done, so the
held node's own reconcile skipped it: the standby stayed on (a group commit written in a worker
thread made it happen in 3 or 4 runs of 4; a slower vCenter or disk can too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from journal import Journal, Transition, kinds
from machines.lifecycle import LDAP_AUTHENTICATED
from orchestrator.daemon import Reconciler
from tests.orchestrator.test_daemon_drift import MANAGER, _approved_and_done
from tests.orchestrator.test_daemon_parts import _embedded, _starter

HOLD_S = 10.0  # at most, for the other nodes to end; a bound, not a timing the test relies on


def _hold_first_built_conferencing_node(r: Reconciler, held: dict[str, Any]) -> None:
    """Delay the commit that takes the first Conferencing Node to ``ldap_authenticated`` until every other
    node is built and no other reconcile is in flight; record what the models and the journal said then."""
    engine = r.generation.engine
    committer = engine._committer
    original: Callable[[list[Any]], Awaitable[list[Any]]] = committer.commit_all

    def built(t: Transition) -> bool:
        return t.node != MANAGER and t.to_state == LDAP_AUTHENTICATED and t.from_state != LDAP_AUTHENTICATED

    async def commit_all(items: list[Any]) -> list[Any]:
        node = next((t.node for t in items if isinstance(t, Transition) and built(t)), None)
        if node is not None and "node" not in held:
            held["node"] = node
            others = [n for n in r.names() if n != node]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + HOLD_S
            while not all(engine.state_of(n) == LDAP_AUTHENTICATED for n in others) or r.statistics()["in_flight"] > 1:
                if loop.time() > deadline:
                    held["timed_out"] = True
                    break
                await asyncio.sleep(0.01)
            held["models"] = engine.nodes()
            row = r.journal.node(node)
            held["row"] = row.state if row is not None else None
        return await original(items)

    committer.commit_all = commit_all  # type: ignore[method-assign]


async def test_the_standby_is_powered_off_when_the_last_built_node_commits_after_the_others_ended(
    tmp_path: Path,
) -> None:
    config = _starter(tmp_path)
    config.write_text(config.read_text().replace("[deployment]\n", '[deployment]\nprofile = "contingency"\n', 1))
    held: dict[str, Any] = {}
    seen: dict[str, list[str]] = {}

    def offs(r: Reconciler) -> list[str]:
        found = r.journal.events(kinds=[kinds.STANDBY_POWER_OFF])
        return [e.node or "" for e in found if e.payload["phase"] == "done"]

    async def then(r: Reconciler) -> None:
        _hold_first_built_conferencing_node(r, held)
        await _approved_and_done(r)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5  # the power-off follows the last commit at once; without the fix, never
        while len(offs(r)) < len(r.names()) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        seen["offs"] = offs(r)

    r = await _embedded(config, lambda _r: "offs" in seen, then)
    # The window was really open: every model built while the held node's row was not yet.
    assert "node" in held and "timed_out" not in held, held
    assert set(held["models"].values()) == {LDAP_AUTHENTICATED}
    assert held["row"] != LDAP_AUTHENTICATED
    # And still every VM off, each once, the Manager last.
    assert sorted(seen["offs"]) == sorted(r.names()) and seen["offs"][-1] == MANAGER
    with Journal.open(r.session.journal_path) as journal:
        events = list(journal.events(kinds=[kinds.STANDBY_POWER_OFF]))
    assert len(events) == 2 * len(r.names())  # started and done per VM
