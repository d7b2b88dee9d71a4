"""A world opened ``shared`` by two owners (the lab's simulators and a run): each sees what the other committed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapters.sim.world import SimWorld
from config.errors import ConfigError


async def test_two_shared_owners_see_each_others_commits(tmp_path: Path) -> None:
    """A commit of one is read by the other: values, keys, indexes, derived values and versions follow."""
    path = tmp_path / "world.sqlite"
    lab, run = SimWorld.open(path, shared=True), SimWorld.open(path, shared=True)
    try:
        assert run.lookup("pexip:worker_vm", "name", "conf-1") == []
        assert run.derived("pexip:worker_vm", "names", lambda v: v["name"]) == {}
        version = run.version("pexip:worker_vm")
        await lab.apply([("pexip:worker_vm", "1", {"name": "conf-1"})])
        assert run.get("pexip:worker_vm", "1") == {"name": "conf-1"}
        assert run.lookup("pexip:worker_vm", "name", "conf-1") == ["1"]
        assert run.derived("pexip:worker_vm", "names", lambda v: v["name"]) == {"1": "conf-1"}
        assert run.version("pexip:worker_vm") > version
        await run.apply([("pexip:worker_vm", "1", None), ("vsphere:vm", "conf-1", {"power_state": "poweredOn"})])
        assert lab.get("pexip:worker_vm", "1") is None and [k for k, _ in lab.items("vsphere:vm")] == ["conf-1"]
    finally:
        await lab.aclose()
        await run.aclose()


async def test_an_exclusive_world_still_refuses_a_second_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``shared`` the first owner keeps the file to itself: a second open is a clear error."""
    path = tmp_path / "world.sqlite"
    first = SimWorld.open(path)
    # The shared opener waits out the lock for 10 s before it is refused; the refusal, not the wait, is
    # what is tested here (10 s of the suite): the same open with a 0.5 s wait.
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **kw: connect(*a, **{**kw, "timeout": min(kw["timeout"], 0.5)}))
    try:
        with pytest.raises(ConfigError, match="another simulation"):
            SimWorld.open(path, shared=True)
    finally:
        await first.aclose()
