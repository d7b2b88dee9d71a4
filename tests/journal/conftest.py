"""Fixtures for the journal tests: a journal on a real file, and an 'attacker' connection."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    # pytest puts the test's own folder on sys.path, not the project root.
    sys.path.insert(0, str(ROOT))

from journal_helpers import NODES, walk  # noqa: E402

from journal import Journal, Transition  # noqa: E402


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "run.sqlite"


@pytest.fixture
def journal(journal_path: Path) -> Iterator[Journal]:
    """An open journal with three registered nodes (events 1..3)."""
    with Journal.open(journal_path) as j:
        j.ensure_nodes(NODES)
        yield j


@pytest.fixture
def busy_journal(journal: Journal) -> Journal:
    """A journal of 9 events: 3 registrations, then mgr and conf-1 moving, a run-level note."""
    walk(journal, "mgr", ["reserved", "bios_locked", "installed"])
    walk(journal, "conf-1", ["reserved", "bios_locked"])
    journal.commit([Transition(node=None, kind="run_note", payload={"text": "halfway"})])
    return journal


@pytest.fixture
def attacker(journal_path: Path) -> Iterator[sqlite3.Connection]:
    """A separate plain sqlite3 connection: someone editing the file with the sqlite3 shell."""
    conn = sqlite3.connect(journal_path, isolation_level=None)
    yield conn
    conn.close()
