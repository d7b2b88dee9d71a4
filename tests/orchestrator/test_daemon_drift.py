"""The daemon's resync re-observes done nodes (fast, in-process, sim): drift journaled, reversible re-applied,
a node whose drift is not reversible failed with the repair command and left for the operator."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.sim.world import VM
from journal import Journal, kinds
from machines.plan import Stopped
from orchestrator import api
from orchestrator.daemon import Reconciler
from orchestrator.steps.base import URI
from tests.orchestrator.test_daemon_parts import _embedded, _starter

MANAGER = "pexip-mgmt"
CONF = "pexip-conf-01"


def _all_done(r: Reconciler) -> bool:
    return set(r.generation.engine.nodes().values()) == {"ldap_authenticated"}


async def _approved_and_done(r: Reconciler) -> None:
    """Approve the Manager's security wizard from another connection, then wait until every node is done."""
    while r.generation.engine.state_of(MANAGER) != "awaiting_approval":
        await asyncio.sleep(0.02)
    settings = api.SessionSettings(journal=r.session.journal_path)
    with api.open_existing_journal(settings) as journal:
        api.approve(journal, MANAGER, "security_wizard", by="test", reason="t", settings=settings)
    while not _all_done(r) or len(r.queue):
        await asyncio.sleep(0.02)


async def test_a_resync_journals_drift_and_reapplies_a_changed_setting(tmp_path: Path) -> None:
    """SSH turned on behind the daemon's back: the resync journals drift_detected, turns it off, the node stays done."""
    seen: dict[str, int] = {}

    async def drift(r: Reconciler) -> None:
        await _approved_and_done(r)
        seen["before"] = r.reconciles
        await r.generation.systems.pexip.patch(f"{URI}global/1/", {"enable_ssh": True})
        r.resync()

    def repaired(r: Reconciler) -> bool:
        found = r.journal.last_event(MANAGER, kind=kinds.DRIFT_DETECTED)
        committed = r.journal.last_event(MANAGER, kind=kinds.STEP_COMMITTED)
        return found is not None and committed is not None and committed.seq > found.seq

    r = await _embedded(_starter(tmp_path), repaired, drift)
    with Journal.open(r.session.journal_path) as journal:
        found = journal.last_event(MANAGER, kind=kinds.DRIFT_DETECTED)
        assert found is not None and found.step == "global_settings"
        assert found.payload["observed"] == {"global.enable_ssh": True}
        committed = journal.last_event(MANAGER, kind=kinds.STEP_COMMITTED)
        assert committed is not None and committed.step == "global_settings"
        assert committed.payload["cause"] == "drift"
        assert journal.node(MANAGER).state == "ldap_authenticated"  # type: ignore[union-attr]
    assert r.reconciles > seen["before"]


async def test_a_gate_recheck_reads_nothing_again(tmp_path: Path) -> None:
    """A node re-checked at its gate (every gate_recheck_s) is not refreshed: drift waits for the resync."""

    async def drift_at_the_gate(r: Reconciler) -> None:
        while r.generation.engine.state_of(MANAGER) != "awaiting_approval":
            await asyncio.sleep(0.02)
        assert r.session.world is not None
        stored = r.session.world.get(VM, MANAGER)
        assert stored is not None
        lowered = {**stored, "reservation": {**stored["reservation"], "cpu_reservation_mhz": 0}}
        await r.session.world.apply([(VM, MANAGER, lowered)])
        start = r.reconciles
        while r.reconciles < start + 5:  # five re-checks at 0.1 s
            await asyncio.sleep(0.02)
        assert r.journal.last_event(MANAGER, kind=kinds.DRIFT_DETECTED) is None
        r.resync()

    def detected(r: Reconciler) -> bool:
        return r.journal.last_event(MANAGER, kind=kinds.DRIFT_DETECTED) is not None

    r = await _embedded(_starter(tmp_path), detected, drift_at_the_gate)
    with Journal.open(r.session.journal_path) as journal:
        found = journal.last_event(MANAGER, kind=kinds.DRIFT_DETECTED)
    assert found is not None and found.step == "reserve_resources"


async def test_a_deleted_vm_fails_its_node_which_is_then_left_for_the_operator(tmp_path: Path) -> None:
    """A VM gone is not reversible: the node fails naming the repair command, and neither an event nor a
    resync retries it (the daemon would otherwise import a new VM by itself)."""
    seen: dict[str, int] = {}

    async def delete(r: Reconciler) -> None:
        await _approved_and_done(r)
        assert r.session.world is not None
        await r.session.world.apply([(VM, CONF, None)])
        r.resync()
        while r.generation.engine.state_of(CONF) != "failed":
            await asyncio.sleep(0.02)
        seen["failed"] = r.reconciles
        r.notice(CONF, "test: its VM came back")  # an event retries any other failed node at once
        r.resync()

    def looked_at_again(r: Reconciler) -> bool:
        return "failed" in seen and r.reconciles >= seen["failed"] + 2 and not len(r.queue)

    r = await _embedded(_starter(tmp_path), looked_at_again, delete)
    with Journal.open(r.session.journal_path) as journal:
        assert journal.last_event(CONF, kind=kinds.RETRIED) is None
        assert journal.node(CONF).state == "failed"  # type: ignore[union-attr]
    held = r.results[CONF]
    assert isinstance(held, Stopped) and f"orchestrator resume {CONF} --from-step deploy_ova" in held.reason


async def test_a_contingency_deployment_ends_powered_off_under_the_daemon(tmp_path: Path) -> None:
    """As `run` ends a contingency deployment: once every node is built, every VM off (the Manager last),
    each journaled; a resync after it powers nothing off again."""
    config = _starter(tmp_path)
    config.write_text(config.read_text().replace("[deployment]\n", '[deployment]\nprofile = "contingency"\n', 1))
    seen: dict[str, int] = {}

    def offs(r: Reconciler) -> list[str]:
        found = r.journal.events(kinds=[kinds.STANDBY_POWER_OFF])
        return [e.node or "" for e in found if e.payload["phase"] == "done"]

    async def then(r: Reconciler) -> None:
        await _approved_and_done(r)
        while len(offs(r)) < len(r.names()):
            await asyncio.sleep(0.02)
        seen["count"] = len(list(r.journal.events(kinds=[kinds.STANDBY_POWER_OFF])))
        seen["reconciles"] = r.reconciles
        r.resync()

    def resynced(r: Reconciler) -> bool:
        return "reconciles" in seen and r.reconciles >= seen["reconciles"] + len(r.names()) and not len(r.queue)

    r = await _embedded(config, resynced, then)
    with Journal.open(r.session.journal_path) as journal:
        events = list(journal.events(kinds=[kinds.STANDBY_POWER_OFF]))
    done = [e.node for e in events if e.payload["phase"] == "done"]
    assert sorted(done) == sorted(r.names()) and done[-1] == MANAGER
    assert {e.payload["power_state"] for e in events if e.payload["phase"] == "done"} == {"poweredOff"}
    assert len(events) == seen["count"] == 2 * len(r.names())  # started and done per VM; the resync added none


async def test_a_resync_has_vsphere_read_its_inventory_afresh(tmp_path: Path) -> None:
    """Each resync tells the vSphere adapter to read every VM's brief afresh at its next lookup (the real
    adapter's side: tests/adapters/test_vsphere_kept_briefs.py), once per resync."""
    told: list[str] = []

    async def resync_twice(r: Reconciler) -> None:
        vsphere = r.generation.systems.vsphere
        # The twin keeps nothing to read again: that it is told, and when, is what can be seen here.
        vsphere.resync = lambda: told.append("resync")  # type: ignore[method-assign]
        r.resync()
        r.resync()

    await _embedded(_starter(tmp_path), lambda r: len(told) == 2 and not len(r.queue), resync_twice)
    assert told == ["resync", "resync"]
