"""The library API without the command line: sessions, resume's node selection, verify's choice of key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from adapters.sim.console import SimConsole
from adapters.sim.world import SimWorld
from config.errors import ConfigError
from journal import Journal
from orchestrator import api
from orchestrator.clock import FakeClock
from tests.orchestrator.conftest import simulate

BROKEN = "pexip-conf-00001"  # the node a permanent fault fails
HEALTHY = "pexip-conf-00002"


@pytest.fixture
def no_caller_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No configuration file or journal found by default: the tests name every file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_JOURNAL", raising=False)


@pytest.fixture
async def failed_sim(sim: api.SimulationSettings, no_caller_defaults: None) -> api.SimulationSettings:
    """A finished simulation in which one Conferencing Node failed on a permanent fault."""
    report, _ = await simulate(sim, faults=f"permanent=reserve_resources@{BROKEN}")
    assert report.exit_code == 1
    return sim


@pytest.mark.parametrize(
    "node,from_step,names,retry",
    [
        (None, None, ["pexip-mgr", BROKEN, HEALTHY, "pexip-conf-00003"], [BROKEN]),  # --all: the failed one retried
        (BROKEN, None, [BROKEN], [BROKEN]),  # the failed node named: retried
        (HEALTHY, None, [HEALTHY], []),  # a node that did not fail: driven on, nothing put back
        (HEALTHY, "reserve_resources", [HEALTHY], [HEALTHY]),  # --from-step rewinds the named node, failed or not
    ],
)
async def test_resume_targets(
    failed_sim: api.SimulationSettings, node: str | None, from_step: str | None, names: list[str], retry: list[str]
) -> None:
    """resume drives the named node (or all) and puts back only the failed ones, or the named one with --from-step."""
    with Journal.open(failed_sim.journal) as journal:
        got_names, got_retry = api.resume_targets(journal, node, from_step)
    assert sorted(got_names) == sorted(names) and got_retry == retry


async def test_resume_of_a_simulation_retries_the_failed_node_only(failed_sim: api.SimulationSettings) -> None:
    """Without a configuration the journal's simulation is resumed; only the failed node is retried."""
    settings = api.SessionSettings(journal=failed_sim.journal, actor="alice")
    report = await api.resume(settings, all_nodes=True, clock=FakeClock())
    assert report.exit_code == 0
    with Journal.open(failed_sim.journal) as journal:
        retried = {e.node for e in journal.events(kinds=["retried"])}
        assert {r.state for r in journal.nodes()} == {"ldap_authenticated"}
    assert retried == {BROKEN}


@pytest.mark.parametrize(
    "node,all_nodes,from_step,field",
    [
        (None, False, None, "NODE"),  # neither a node nor --all
        (BROKEN, True, None, "NODE"),  # both
        (None, True, "reserve_resources", "--from-step"),  # --from-step with --all
    ],
)
async def test_resume_refuses_bad_input_before_opening_anything(
    tmp_path: Path, no_caller_defaults: None, node: str | None, all_nodes: bool, from_step: str | None, field: str
) -> None:
    """resume names the wrong option, and creates no journal."""
    settings = api.SessionSettings(journal=tmp_path / "j.sqlite")
    with pytest.raises(ConfigError, match=field):
        await api.resume(settings, node, all_nodes=all_nodes, from_step=from_step)
    assert not (tmp_path / "j.sqlite").exists()


async def test_resume_without_configuration_needs_a_simulation_journal(
    tmp_path: Path, no_caller_defaults: None
) -> None:
    """A journal that records no simulation cannot be resumed without its deployment file."""
    path = tmp_path / "j.sqlite"
    with api.open_journal(path):
        pass
    with pytest.raises(ConfigError, match="-c/--config"):
        await api.resume(api.SessionSettings(journal=path), all_nodes=True)


async def test_session_closes_world_and_journal_after_systems_even_when_one_raises(
    sim: api.SimulationSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Systems close first, then the world, then the journal; a failing close does not skip the others."""
    closed: list[str] = []
    # Spies around the real closers (the real ones still run): the order is not otherwise observable.
    world_aclose, journal_close = SimWorld.aclose, Journal.close

    async def console_aclose(self: SimConsole) -> None:
        closed.append("systems")
        raise RuntimeError("console would not close")

    async def spy_world(self: SimWorld) -> None:
        closed.append("world")
        await world_aclose(self)

    def spy_journal(self: Journal) -> None:
        closed.append("journal")
        journal_close(self)

    monkeypatch.setattr(SimConsole, "aclose", console_aclose)
    monkeypatch.setattr(SimWorld, "aclose", spy_world)
    monkeypatch.setattr(Journal, "close", spy_journal)
    Path(f"{sim.world}.d").mkdir()
    settings = api.SessionSettings(journal=sim.journal, actor="simulate", simulation=sim)
    with pytest.raises(RuntimeError, match="would not close"):
        async with api.open_session(settings) as session:
            assert session.world is not None and session.hooks is session.world and session.simulated
    assert closed == ["systems", "world", "journal"]
    SimWorld.open(sim.world).close()  # the world's exclusive lock was released


@pytest.fixture
def exported(tmp_path: Path, no_caller_defaults: None) -> tuple[Path, Path]:
    """A journal with a few events, and its sealed export."""
    path = tmp_path / "a.sqlite"
    with api.open_journal(path):
        pass  # its first event: the lifecycle definition it was written by
    out = tmp_path / "audit.jsonl"
    assert api.export(api.SessionSettings(journal=path), out) == 1
    return path, out


def _other_journal(tmp_path: Path) -> Path:
    other = tmp_path / "b.sqlite"
    with api.open_journal(other):
        pass
    return other


def test_verify_of_an_export_takes_no_key_from_it(tmp_path: Path, exported: tuple[Path, Path]) -> None:
    """Without a trusted public key an export is UNVERIFIED, whatever the export names or the directory holds."""
    _other_journal(tmp_path)
    _, out = exported
    result = api.verify(api.SessionSettings(journal=tmp_path / "a.sqlite"), out)
    assert result.what == str(out)
    assert (result.report.ok, result.report.sealed, result.report.status) == (True, None, "UNVERIFIED")


def test_verify_without_a_file_checks_the_resolved_journal(exported: tuple[Path, Path]) -> None:
    """verify with no file checks the journal the settings resolve to (chain intact, no trusted key given)."""
    path, _ = exported
    result = api.verify(api.SessionSettings(journal=path))
    assert (result.what, result.report.ok, result.report.status) == (str(path), True, "UNVERIFIED")


def test_export_refuses_a_time_that_is_not_iso_8601(exported: tuple[Path, Path], tmp_path: Path) -> None:
    """export names --since and gives an example when the time does not parse."""
    path, _ = exported
    with pytest.raises(ConfigError, match="--since"):
        api.export(api.SessionSettings(journal=path), tmp_path / "x.jsonl", since="yesterday")


async def test_run_without_a_configuration_is_bad_input(tmp_path: Path, no_caller_defaults: None) -> None:
    """run needs the deployment file and says how to give one; no journal is made."""
    with pytest.raises(ConfigError, match="orchestrator.toml"):
        await api.run(api.SessionSettings(journal=tmp_path / "j.sqlite"))
    assert not (tmp_path / "j.sqlite").exists()


def test_session_settings_are_frozen() -> None:
    """Settings are what a caller knows, fixed before anything opens."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        api.SessionSettings().actor = "mallory"  # type: ignore[misc]
