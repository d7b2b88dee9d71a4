"""`simulate --fresh` starts from nothing: no journal, world, or bootstrap file of an earlier simulation is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.bootstrap_store import bootstrap_dir
from orchestrator.cli import cli


def test_fresh_removes_the_earlier_simulations_bootstrap_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept file would be taken for the one of a worker_vm POSTed by a run killed before it stored its own:
    uploaded, it is not that worker's, and the node never syncs (the CI hang of the SIGKILL series)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATOR_JOURNAL", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    journal = tmp_path / "j.sqlite"
    common = ["--journal", str(journal), "-q", "simulate", "--nodes", "2", "--world", str(tmp_path / "w.sqlite")]
    first = CliRunner().invoke(cli, common, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    stored = bootstrap_dir(journal) / "pexip-conf-00001.bootstrap"
    assert stored.is_file()
    # The fresh run stops before the conferencing node's deployment_file could store a file of its own.
    again = CliRunner().invoke(
        cli, [*common, "--fresh", "--faults", "permanent=deployment_file@pexip-conf-00001"], catch_exceptions=False
    )
    assert again.exit_code != 0 and "deployment_file" in again.output, again.output
    assert not stored.exists()
