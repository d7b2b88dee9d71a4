"""A run's closing checkpoint rides in its recap's transaction (issue #11), and a kill between that COMMIT and the
checkpoint's line is mended by the next run: the same signed line appended, and the journal verifies."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.sim.world import SimWorld
from bench.commits_bench import CommitCounter
from config.load import simulated_deployment
from journal import Journal, generate_signing_key
from journal._chain import canonical_json
from orchestrator import api
from orchestrator.clock import FakeClock
from tests.adapters._rsyslog import Rsyslog, running_rsyslog
from tests.orchestrator.cli_helpers import SECRETS, invoke, public_key, sim_env
from tests.orchestrator.test_trust_records import _witnessed_config as witnessed_config

ROOT = Path(__file__).resolve().parents[2]


async def test_the_closing_checkpoint_is_in_the_transaction_of_the_recap(tmp_path: Path) -> None:
    """One node, transactions counted as bench/commits_bench.py counts them: the last step's commit, the leases'
    release, the recap and the closing checkpoint are one COMMIT, and no transaction holds a checkpoint alone."""
    counter = CommitCounter()
    uninstall = counter.install()
    try:
        (tmp_path / "run").mkdir()
        settings = api.SimulationSettings(
            nodes=1, latency=0.0, world=tmp_path / "run" / "w.sqlite", journal=tmp_path / "run" / "j.sqlite", fresh=True
        )
        report, _ = await api.simulate(settings)
    finally:
        uninstall()
    assert report.exit_code == 0
    (recap,) = [held.split(" + ") for held in counter.by_content if "run_recap" in held]
    assert {"step_committed", "leases released", "run_recap", "checkpoint"} <= set(recap), recap
    assert recap[-1] == "checkpoint"  # signed over the recap
    assert "checkpoint" not in counter.by_content, counter.by_content
    with Journal.open(tmp_path / "run" / "j.sqlite") as journal:
        newest = journal.checkpoints()[-1]
        assert newest["seq"] == journal.statistics()["last_seq"]
        assert journal.checkpoints_path is not None
        assert journal.checkpoints_path.read_text().splitlines()[-1] == canonical_json(newest)


async def test_a_drive_without_a_closing_checkpoint_leaves_its_recap_durable(tmp_path: Path) -> None:
    """``api.drive`` with no session (no checkpointer): the recap is committed when it returns, not left held."""
    deployment = simulated_deployment(1, tmp_path / "world.d")
    world = SimWorld.open(tmp_path / "world.sqlite")
    try:
        with api.open_journal(tmp_path / "journal.sqlite") as journal:
            report = await api.drive(
                deployment, journal, world=world, hooks=world, auto_approve=True, clock=FakeClock()
            )
            assert report.exit_code == 0
            with sqlite3.connect(f"file:{tmp_path / 'journal.sqlite'}?mode=ro", uri=True) as other:
                (kind,) = other.execute("SELECT kind FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            assert kind == "run_recap"
    finally:
        await world.aclose()


# The simulation of two nodes, killed (SIGKILL) right after the COMMIT of its recap and closing checkpoint,
# before that checkpoint's line is appended to the checkpoint list.
_KILLED_AFTER_THE_RECAPS_COMMIT = textwrap.dedent("""
    import os, signal, sqlite3, sys
    sys.path.insert(0, {root!r})
    from journal import _checkpoints

    append = _checkpoints.append

    def killed_after_the_recap(file, record):
        with sqlite3.connect(f"file:{{file.with_suffix('')}}?mode=ro", uri=True) as db:  # what is on disk
            (kind,) = db.execute("SELECT kind FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        if kind == "run_recap":
            os.kill(os.getpid(), signal.SIGKILL)
        append(file, record)

    _checkpoints.append = killed_after_the_recap
    from orchestrator.cli import cli
    cli(["--journal", "j.sqlite", "simulate", "--nodes", "2", "--world", "w.sqlite"], prog_name="orchestrator")
""")


def test_a_kill_between_the_recaps_commit_and_the_checkpoint_line_is_mended_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database holds the closing checkpoint the file lacks: `journal verify --checkpoints FILE` passes
    (the file is a prefix of it), the next run appends that very line and says so, and verify passes again."""
    here = sim_env(tmp_path, monkeypatch)
    simulate = ("--journal", "j.sqlite", "simulate", "--nodes", "2", "--world", "w.sqlite")
    first, out, err = invoke(*simulate)  # the checkpoint list holds this run's lines; the next run is killed
    assert first == 0, out + err
    code = _KILLED_AFTER_THE_RECAPS_COMMIT.format(root=str(ROOT))
    env = {**os.environ, **SECRETS}
    proc = subprocess.run([sys.executable, "-c", code], cwd=here, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    journal, listed = here / "j.sqlite", here / "j.sqlite.checkpoints"
    with sqlite3.connect(journal) as db:
        (last, kind) = db.execute("SELECT seq, kind FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        rows = db.execute("SELECT seq, at, deployment, head, nodes, key_id, signature FROM checkpoints").fetchall()
    names = ("seq", "at", "deployment", "head", "nodes", "key_id", "signature")
    closing = dict(zip(names, rows[-1], strict=True))
    assert kind == "run_recap" and closing["seq"] == last  # committed with the recap
    lines = listed.read_text().splitlines()
    assert canonical_json(closing) not in lines and len(rows) == len(lines) + 1  # killed before its line
    pem = public_key(journal, here / "auditor.pem")
    verify = ("--journal", str(journal), "journal", "verify", "--public-key", str(pem), "--checkpoints", str(listed))
    result, out, err = invoke(*verify)
    assert result == 0, out + err  # the file is a prefix of the database's checkpoints: nothing is contradicted

    again, out, err = invoke(*simulate)
    assert again == 0, out + err
    assert "appended and sent to syslog now" in err, err
    lines = listed.read_text().splitlines()
    assert canonical_json(closing) in lines  # the same signed bytes, from the database's row
    assert [json.loads(line)["seq"] for line in lines] == sorted(json.loads(line)["seq"] for line in lines)
    result, out, err = invoke(*verify)
    assert result == 0 and "VERIFIED" in out, out + err


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    with running_rsyslog(tmp_path / "rsyslog") as server:
        yield server


def test_the_line_a_stopped_process_left_out_reaches_the_syslog_server_at_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rsyslog: Rsyslog
) -> None:
    """The checkpoint list without its last line (as after a kill between the COMMIT and the line): the next run
    appends that line and sends the same signed record to the syslog server."""
    here = sim_env(tmp_path, monkeypatch)
    config = witnessed_config(here, "site", rsyslog, generate_signing_key(here / "private"))
    assert invoke("-c", str(config), "run", "pexip-mgr", "--until", "reserved")[0] == 0
    listed = here / "site.journal.sqlite.checkpoints"
    lines = listed.read_text().splitlines()
    assert len(rsyslog.lines(len(lines))) == len(lines)
    listed.write_text("".join(line + "\n" for line in lines[:-1]))  # the closing checkpoint's line left out
    code, out, err = invoke("-c", str(config), "run", "pexip-mgr", "--until", "reserved")
    assert code == 0 and "appended and sent to syslog now" in err, out + err
    mended = listed.read_text().splitlines()
    assert mended[: len(lines)] == lines  # the very line, in its place
    received = [line.split(" - checkpoint - ", 1)[1] for line in rsyslog.lines(len(mended) + 1)]
    assert received.count(lines[-1]) == 2, received  # sent when it was made, and again by the next run
