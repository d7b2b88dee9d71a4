"""Durability: a process killed right after commit() leaves its events and signed checkpoints that hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from journal_helpers import NODES, ROOT

from journal import Journal, Signer, VerifyStatus, generate_signing_key

_PRELUDE = f"""
import os, sys
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from journal import Journal, Signer, Transition
j = Journal.open(sys.argv[1])
j.ensure_nodes({NODES!r})
signer = Signer.from_pem(Path(sys.argv[2]).read_bytes()) if len(sys.argv) > 2 else None
"""


def _key(journal_path: Path) -> Path:
    return generate_signing_key(journal_path.parent / "private")


def _public(key: Path) -> str:
    return Signer.from_pem(key.read_bytes()).public_key_pem()


def _run(code: str, journal_path: Path, key: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(code), str(journal_path), str(key)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_exit_right_after_commit_keeps_everything(journal_path: Path) -> None:
    """os._exit straight after commit() (no close, no flush) loses nothing."""
    proc = _run(
        """
        j.commit([Transition(node="mgr", kind="step_committed", from_state="deployed", to_state="reserved"),
                  Transition(node="conf-1", kind="step_committed", from_state="deployed", to_state="reserved")])
        j.checkpoint(signer)
        os._exit(0)
    """,
        journal_path,
        key := _key(journal_path),
    )
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    with Journal.open(journal_path) as j:
        assert [(e.seq, e.node) for e in j.events(kinds=["step_committed"])] == [(4, "mgr"), (5, "conf-1")]
        assert j.node("conf-1").state == "reserved"  # type: ignore[union-attr]
        report = j.verify(public_key=_public(key), checkpoints=j.checkpoints_path)
        assert report.status == VerifyStatus.VERIFIED and report.signed_seq == 5, report.problems


def test_sigkill_mid_run_leaves_a_consistent_journal(journal_path: Path) -> None:
    """SIGKILL while committing: every acknowledged commit is there, and the seal holds."""
    proc = _run(
        """
        states = ["reserved", "bios_locked", "installed", "hardened"]
        i = 0
        while True:
            events = j.commit([Transition(node=n, kind="step_committed", to_state=states[i % 4], attempt=i)
                               for n in ("mgr", "conf-1", "conf-2")])
            print(events[-1].seq, flush=True)  # acknowledged: durable from here on
            if i % 10 == 0:
                j.checkpoint(signer)
            i += 1
    """,
        journal_path,
        key := _key(journal_path),
    )
    assert proc.stdout is not None
    acknowledged = 0
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 150:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    with Journal.open(journal_path) as j:
        report = j.verify(public_key=_public(key), checkpoints=j.checkpoints_path)
        assert report.status == VerifyStatus.VERIFIED and report.signed_seq > 3, report.problems
        stats = j.statistics()
        assert stats["last_seq"] >= acknowledged
        assert (stats["last_seq"] - 3) % 3 == 0  # whole commits only: never part of one
        last = j.last_event("conf-2")
        assert last is not None and j.node("conf-2").state == last.to_state  # type: ignore[union-attr]
        j.record(node="mgr", kind="resumed")  # the chain continues after the crash
        assert j.verify().ok


def test_concurrent_processes_share_one_chain(journal_path: Path) -> None:
    """Two processes committing at the same time interleave into one unbroken chain."""
    with Journal.open(journal_path) as j:
        j.ensure_nodes(NODES)
    code = """
        node = sys.argv[3]
        for i in range(60):
            j.commit([Transition(node=node, kind="tick", attempt=i)])
        os._exit(0)
    """
    key = _key(journal_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PRELUDE + textwrap.dedent(code), str(journal_path), str(key), node], cwd=ROOT
        )
        for node in ("mgr", "conf-1")
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    with Journal.open(journal_path) as j:
        assert j.verify().ok
        ticks = list(j.events(kinds=["tick"]))
        assert len(ticks) == 120
        for node in ("mgr", "conf-1"):
            assert [e.attempt for e in ticks if e.node == node] == list(range(60))
