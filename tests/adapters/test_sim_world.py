"""The simulated world: store, group commit, persistence, latency, faults, effects."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import adapters
import adapters.sim
from adapters.sim import world as sim_world
from adapters.sim.world import EXIT_CODE, Effect, FaultPlan, FaultPoint, SimWorld
from config.errors import ConfigError, Rejected, Unreachable

REPO = Path(__file__).resolve().parents[2]


async def test_group_commit_shares_one_transaction_per_tick(world: SimWorld) -> None:
    """Changes issued by many coroutines in the same tick are committed together."""

    async def node(i: int) -> None:
        for k in range(5):
            await world.apply([("test", f"{i}/{k}", {"i": i, "k": k})], [Effect(f"n{i}", "api_patch", "x")])

    await asyncio.gather(*(node(i) for i in range(200)))
    stats = world.statistics()
    assert stats["changes"] == 1000
    assert stats["commits"] <= 10  # 5 rounds of 200 coroutines, not 1000 transactions
    assert stats["pending"] == 0


async def test_waiter_resumes_only_after_commit(tmp_path: Path) -> None:
    """A coroutine that awaited apply() finds its change on disk, read by another connection."""
    import sqlite3

    w = SimWorld.open(tmp_path / "world.sqlite")
    await w.apply([("test", "k", {"v": 1})], [Effect("n", "vm_import", "ova")])
    w.close()  # releases the exclusive lock so a plain reader may look
    conn = sqlite3.connect(tmp_path / "world.sqlite")
    assert conn.execute("SELECT value FROM kv WHERE system='test' AND key='k'").fetchone() == ('{"v":1}',)
    assert conn.execute("SELECT node, kind, detail FROM effects").fetchall() == [("n", "vm_import", "ova")]
    conn.close()


async def test_cancelled_waiter_does_not_cancel_the_batch(world: SimWorld) -> None:
    """Cancelling one waiter leaves the shared transaction, and its neighbours, intact."""
    first = asyncio.ensure_future(world.apply([("test", "a", {"v": 1})]))
    second = asyncio.ensure_future(world.apply([("test", "b", {"v": 2})]))
    await asyncio.sleep(0)  # both queued in the same batch
    first.cancel()
    await second
    assert world.statistics()["changes"] == 2
    assert world.get("test", "a") == {"v": 1}


async def test_state_and_effects_persist_across_reopen(tmp_path: Path) -> None:
    """A reopened world has the same values, deletions and effect counts."""
    w = SimWorld.open(tmp_path / "world.sqlite")
    await w.apply(
        [("vm", "a", {"power": "on"}), ("vm", "b", {"power": "off"})],
        [Effect("a", "vm_import"), Effect("b", "vm_import")],
    )
    await w.apply([("vm", "b", None)], [Effect("b", "api_delete", "vm")])
    await w.aclose()
    w = SimWorld.open(tmp_path / "world.sqlite")
    try:
        assert w.get("vm", "a") == {"power": "on"}
        assert w.get("vm", "b") is None
        assert w.effects_summary() == {"a": {"vm_import": 1}, "b": {"api_delete": 1, "vm_import": 1}}
        assert [(e["seq"], e["node"], e["kind"], e["detail"]) for e in w.effects()] == [
            (1, "a", "vm_import", ""),
            (2, "b", "vm_import", ""),
            (3, "b", "api_delete", "vm"),
        ]
        assert all(e["at"].endswith("+00:00") for e in w.effects())
    finally:
        w.close()


async def test_a_rewritten_value_is_updated_where_it_stands(tmp_path: Path) -> None:
    """A value written again keeps its row (an upsert, not a delete and insert: issue #11, the world's commits)."""
    import sqlite3

    w = SimWorld.open(tmp_path / "world.sqlite")
    await w.apply([("vm", "a", {"power": "off"}), ("vm", "b", {"power": "off"})])
    before = w._conn.execute("SELECT rowid, key FROM kv ORDER BY key").fetchall()
    await w.apply([("vm", "a", {"power": "on"})])
    assert w._conn.execute("SELECT rowid, key FROM kv ORDER BY key").fetchall() == before
    w.close()
    conn = sqlite3.connect(tmp_path / "world.sqlite")
    assert conn.execute("SELECT value FROM kv WHERE key = 'a'").fetchone() == ('{"power":"on"}',)
    conn.close()


async def test_a_world_file_with_the_earlier_tables_is_read_and_written(tmp_path: Path) -> None:
    """A world made before kv became a rowid table (WITHOUT ROWID, effects AUTOINCREMENT) resumes as it was."""
    import sqlite3

    conn = sqlite3.connect(tmp_path / "world.sqlite")
    conn.executescript(
        """
        CREATE TABLE kv (system TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                         PRIMARY KEY (system, key)) WITHOUT ROWID;
        CREATE TABLE effects (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, node TEXT NOT NULL,
                              kind TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
        INSERT INTO kv VALUES ('vm', 'a', '{"power":"off"}'), ('vm', 'b', '{"power":"off"}');
        INSERT INTO effects (at, node, kind) VALUES ('2026-01-01T00:00:00+00:00', 'a', 'vm_import');
        """
    )
    conn.close()
    w = SimWorld.open(tmp_path / "world.sqlite")
    await w.apply([("vm", "a", {"power": "on"}), ("vm", "b", None)], [Effect("a", "power_on")])
    await w.aclose()
    w = SimWorld.open(tmp_path / "world.sqlite")
    try:
        assert w.get("vm", "a") == {"power": "on"} and w.get("vm", "b") is None
        assert [(e["seq"], e["kind"]) for e in w.effects()] == [(1, "vm_import"), (2, "power_on")]
    finally:
        w.close()


async def test_cache_is_a_copy_of_what_was_applied(world: SimWorld) -> None:
    """Changing a dict after applying it does not change the world."""
    value = {"list": [1]}
    await world.apply([("test", "k", value)])
    value["list"].append(2)
    assert world.get("test", "k") == {"list": [1]}


async def test_cache_holds_what_a_reopened_world_reads(tmp_path: Path) -> None:
    """What JSON changes (a tuple, an int key, an int enum, nested) is cached as stored, not as given."""
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    value = {"t": (1, "a"), "nested": [{2: Level.HIGH, "f": 1.5, "n": None, "b": True}], "s": "x"}
    stored = {"t": [1, "a"], "nested": [{"2": 3, "f": 1.5, "n": None, "b": True}], "s": "x"}
    w = SimWorld.open(tmp_path / "world.sqlite")
    await w.apply([("test", "k", value), ("test", "plain", {"l": [[1], {"x": "y"}]})])
    cached, plain = w.get("test", "k"), w.get("test", "plain")
    assert cached == stored and type(cached["nested"][0]["2"]) is int
    await w.aclose()
    w = SimWorld.open(tmp_path / "world.sqlite")
    try:
        assert w.get("test", "k") == cached and w.get("test", "plain") == plain == {"l": [[1], {"x": "y"}]}
    finally:
        w.close()


async def test_settled_waits_for_a_commit_whose_first_waiter_was_cancelled(world: SimWorld) -> None:
    """The commit is the world's, not its first caller's: cancelling that caller neither skips nor stalls it."""
    first = asyncio.ensure_future(world.apply([("test", "a", {"v": 1})]))
    await asyncio.sleep(0)
    first.cancel()
    assert world.statistics()["commits"] == 0  # still queued
    await world.settled()
    assert world.statistics()["changes"] == 1 and world.statistics()["pending"] == 0
    assert first.cancelled() and world.get("test", "a") == {"v": 1}


async def test_observation_returns_only_once_pending_changes_are_committed(world: SimWorld) -> None:
    """An observation made while another coroutine's change awaits its commit returns after that commit: it never
    reports a change that a crash could still undo; a change call does not wait."""
    change = asyncio.ensure_future(world.apply([("test", "a", {"v": 1})]))
    await asyncio.sleep(0)  # the change is in the cache, its commit scheduled
    await world.call("pexip", "PATCH", change=True)
    assert world.statistics()["pending"] == 1 and world.statistics()["commits"] == 0
    await world.call("pexip", "GET", change=False)
    assert world.statistics()["pending"] == 0 and world.statistics()["commits"] == 1
    await change


async def test_keys_are_sorted_and_follow_deletions(world: SimWorld) -> None:
    """keys() lists a system's keys in order, without the deleted ones, and nothing for an unknown system."""
    await world.apply([("obj", "2", {"n": 2}), ("obj", "10", {"n": 10}), ("obj", "1", {"n": 1})])
    await world.apply([("obj", "2", None)])
    assert world.keys("obj") == ["1", "10"] == [k for k, _ in world.items("obj")]
    assert world.keys("nothing") == []


async def test_lookup_index_follows_updates(world: SimWorld) -> None:
    """lookup() finds objects by field value, and follows changes and deletions."""
    await world.apply([("obj", "1", {"name": "a"}), ("obj", "2", {"name": "b"})])
    assert world.lookup("obj", "name", "a") == ["1"]
    await world.apply([("obj", "1", {"name": "c"}), ("obj", "3", {"name": "b"})])
    assert world.lookup("obj", "name", "a") == []
    assert world.lookup("obj", "name", "b") == ["2", "3"]
    await world.apply([("obj", "2", None)])
    assert world.lookup("obj", "name", "b") == ["3"]


async def test_derived_values_follow_updates(world: SimWorld) -> None:
    """derived() holds fn(value) of each key, built on first use and kept by every later write and deletion."""
    await world.apply([("obj", "1", {"n": 1}), ("obj", "2", {"n": 2})])
    doubled = world.derived("obj", "doubled", lambda v: 2 * v["n"])
    assert doubled == {"1": 2, "2": 4}
    await world.apply([("obj", "1", {"n": 5}), ("obj", "3", {"n": 3}), ("obj", "2", None), ("other", "1", {"n": 9})])
    assert world.derived("obj", "doubled", lambda v: 2 * v["n"]) == {"1": 10, "3": 6}


async def test_second_owner_is_refused(world: SimWorld) -> None:
    """A second open of a world in use fails clearly instead of sharing a stale cache."""
    with pytest.raises(ConfigError, match="--world.*another simulation"):
        SimWorld.open(world.path)


async def test_closed_world_refuses_changes(tmp_path: Path) -> None:
    """apply() on a closed world is a programming error."""
    w = SimWorld.open(tmp_path / "world.sqlite")
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        await w.apply([("test", "k", {"v": 1})])


# --- latency ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "low", "high"),
    [
        (True, 0.010, 0.030),  # a side effect: latency x [0.5, 1.5]
        (False, 0.001, 0.003),  # an observation: a tenth of it
    ],
)
async def test_latency_is_jittered_within_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: bool, low: float, high: float
) -> None:
    """Each call waits latency x uniform(0.5, 1.5) (a tenth for observations), never outside."""
    # The bounds are on the wait the world asks for, recorded on its way to the real sleep: a wall-clock
    # upper bound is one a loaded machine breaks (a 3 ms sleep took over 23 ms in a full run beside 8 jobs).
    asked: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay: float) -> None:
        asked.append(delay)
        await real_sleep(delay)

    monkeypatch.setattr(sim_world.asyncio, "sleep", recorded)
    w = SimWorld.open(tmp_path / "world.sqlite", latency=0.02, seed=3)
    try:
        for _ in range(15):
            start = time.perf_counter()
            await w.call("vsphere", "op", change=change)
            waited = time.perf_counter() - start
            assert waited >= asked[-1] - 0.0005  # the wait really happened
        assert len(asked) == 15 and all(low <= a <= high for a in asked)
        assert max(asked) - min(asked) > (high - low) / 10  # jittered, not constant
    finally:
        w.close()


async def test_zero_latency_never_yields(world: SimWorld) -> None:
    """With latency 0 a call does not even give the event loop a turn."""
    ran = []
    task = asyncio.get_running_loop().call_soon(ran.append, 1)
    for _ in range(100):
        await world.call("pexip", "GET", change=True)
        await world.call("pexip", "GET", change=False)
    assert ran == []
    task.cancel()


# --- faults ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", FaultPlan()),  # no faults
        ("transient=0.1", FaultPlan(transient=0.1)),  # a rate
        ("permanent=lock_bios", FaultPlan(permanent=(FaultPoint("lock_bios"),))),  # every node
        ("exit=import_ova@conf-1", FaultPlan(exits=(FaultPoint("import_ova", "conf-1"),))),  # one node
        ("exit=a, exit=b@n , seed=7", FaultPlan(exits=(FaultPoint("a"), FaultPoint("b", "n")), seed=7)),  # repeated
        ("transient=1,permanent=x@y", FaultPlan(transient=1.0, permanent=(FaultPoint("x", "y"),))),  # combined
    ],
)
def test_fault_spec_parses(spec: str, expected: FaultPlan) -> None:
    """Every allowed form of --faults parses to its plan, and prints back to an equal plan."""
    plan = FaultPlan.parse(spec)
    assert plan == expected
    assert FaultPlan.parse(str(plan)) == plan


@pytest.mark.parametrize(
    "spec",
    [
        "transient=1.5",  # rate above 1
        "transient=often",  # not a number
        "crash=lock_bios",  # unknown fault
        "exit",  # no value
        "permanent=@node",  # no step
        "exit=step@",  # empty node
        "seed=x",  # not an integer
    ],
)
def test_bad_fault_spec_names_the_option_and_the_forms(spec: str) -> None:
    """A bad --faults spec is a ConfigError naming --faults and the allowed forms."""
    with pytest.raises(ConfigError) as info:
        FaultPlan.parse(spec)
    assert info.value.problems[0][0] == "--faults"
    assert "transient=RATE" in str(info.value) and "exit=STEP[@NODE]" in str(info.value)


async def test_transient_faults_occur_at_the_given_rate(tmp_path: Path) -> None:
    """transient=0.2 makes about a fifth of the calls Unreachable, and retryable."""
    w = SimWorld.open(tmp_path / "world.sqlite", faults="transient=0.2,seed=11")
    try:
        failures = 0
        for _ in range(2000):
            try:
                await w.call("pexip", "PATCH global", change=True)
            except Unreachable as exc:
                failures += 1
                assert exc.retryable and exc.system == "pexip"
        assert 0.16 <= failures / 2000 <= 0.24
    finally:
        w.close()


@pytest.mark.parametrize(
    ("spec", "node", "step", "raises"),
    [
        ("permanent=lock_bios@conf-1", "conf-1", "lock_bios", True),  # the step on the node
        ("permanent=lock_bios@conf-1", "conf-2", "lock_bios", False),  # another node
        ("permanent=lock_bios@conf-1", "conf-1", "import_ova", False),  # another step
        ("permanent=lock_bios", "conf-2", "lock_bios", True),  # no @NODE: every node
    ],
)
async def test_permanent_fault_rejects_its_step(tmp_path: Path, spec: str, node: str, step: str, raises: bool) -> None:
    """before_step raises Rejected for a matching permanent fault, every time."""
    w = SimWorld.open(tmp_path / "world.sqlite", faults=spec)
    try:
        for _ in range(2):
            if raises:
                with pytest.raises(Rejected, match=f"injected permanent fault at {step} on {node}"):
                    w.before_step(node, step)
            else:
                w.before_step(node, step)
    finally:
        w.close()


_EXIT_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from adapters.sim.world import Effect, SimWorld

    async def main():
        world = SimWorld.open(sys.argv[1], faults="exit=lock_bios")
        await world.apply([("vm", "conf-1", {"bios": "locked"})], [Effect("conf-1", "bios_lock")])
        world.after_apply("conf-1", "import_ova")  # another step: no exit
        world.after_apply("conf-1", "lock_bios")
        print("survived")
        await world.aclose()

    asyncio.run(main())
""")


def test_exit_fault_kills_once_after_committing(tmp_path: Path) -> None:
    """An exit fault ends the process with 70 after its changes committed, once per world."""
    path = tmp_path / "world.sqlite"
    run = [sys.executable, "-c", _EXIT_SCRIPT, str(path)]
    first = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert first.returncode == EXIT_CODE == 70, first.stderr
    assert "survived" not in first.stdout
    assert "injected exit fault at lock_bios on conf-1" in first.stderr
    second = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "survived" in second.stdout
    w = SimWorld.open(path)
    try:
        assert w.effects_summary() == {"conf-1": {"bios_lock": 2}}  # both runs' changes are on disk
    finally:
        w.close()


def test_exports_are_pinned() -> None:
    """The package and the world module export exactly their public API."""
    assert set(adapters.__all__) == {
        "VSphere",
        "PexipApi",
        "Console",
        "CertificateAuthority",
        "Directory",
        "Systems",
        "VmState",
        "DiskAllocation",
        "Reservation",
        "BiosState",
        "Created",
        "WizardState",
    }
    assert all(hasattr(adapters, name) for name in adapters.__all__)
    assert set(adapters.sim.__all__) == {
        "SimWorld",
        "FaultPlan",
        "FaultPoint",
        "Effect",
        "EXIT_CODE",
        "SimVSphere",
        "SimPexipApi",
        "SimConsole",
        "SimCA",
        "SimDirectory",
        "SimProvisioning",
    }
    assert all(hasattr(adapters.sim, name) for name in adapters.sim.__all__)
    assert set(sim_world.__all__) == {
        "SimWorld",
        "FaultPlan",
        "FaultPoint",
        "Effect",
        "EXIT_CODE",
        "VM",
        "CONSOLE",
        "CA",
        "pexip_system",
        "digest",
    }


@pytest.mark.slow
async def test_benchmark_1000_nodes_40_changes(tmp_path: Path) -> None:
    """1,000 nodes making 40 changes each: every change committed (the time is printed, not asserted)."""
    w = SimWorld.open(tmp_path / "world.sqlite")

    async def node(i: int) -> None:
        for k in range(40):
            await w.apply(
                [("bench", f"{i}/{k}", {"i": i, "k": k, "pad": "x" * 50})], [Effect(f"n{i}", "api_patch", "bench")]
            )

    start = time.perf_counter()
    await asyncio.gather(*(node(i) for i in range(1000)))
    elapsed = time.perf_counter() - start
    stats = w.statistics()
    await w.aclose()
    print(f"\n1000 nodes x 40 changes: {elapsed:.2f} s, {stats}")
    assert stats["changes"] == 40_000
