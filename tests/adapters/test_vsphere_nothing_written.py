"""Issue #7, finding 9, against vcsim: what only vCenter can tell is found before anything is written.

A vCenter whose certificate the configuration does not trust is bad input: ``run`` and ``resume``
exit 2 naming the field, and no journal, no key, no world and no event is created.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.lab import Vcsim, make_test_pki, write_lab_config

pytestmark = pytest.mark.vcsim


def _journal(config: Path) -> Path:
    match = re.search(r'^path = "([^"]+journal\.sqlite)"', config.read_text(), flags=re.M)
    assert match, "the lab file names its journal"
    return Path(match[1])


def _ours(root: Path) -> list[Path]:
    """Every file and directory under ``root`` but vcsim's own (its log grows by itself)."""
    return sorted(p for p in root.rglob("*") if p.relative_to(root).parts[0] != "vcsim")


def _run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-c", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_an_untrusted_vcenter_is_refused_before_the_journal_exists(vcsim: Vcsim, tmp_path: Path) -> None:
    """A CA file of another CA: exit 2 naming vcenter, no journal file, and the lab runs once the CA is right."""
    config = write_lab_config(tmp_path / "lab", vcsim)
    other = make_test_pki(tmp_path / "other", ca_name="Some Other CA")
    good = config.read_text()
    config.write_text(good.replace(str(vcsim.ca_file), str(other.ca_file)))
    journal = _journal(config)
    before = _ours(tmp_path)
    code, out = _run(config, "run", "--until", "reserved")
    assert code == 2, out
    assert "\n  vcenter: " in out and "ca_file" in out, out
    assert not journal.exists()
    assert _ours(tmp_path) == before  # no journal, key or world
    config.write_text(good)
    code, out = _run(config, "run", "pexip-mgmt", "--until", "deployed")
    assert code == 0, out
    assert journal.exists()


def test_resume_against_a_vcenter_no_longer_trusted_appends_no_event(vcsim: Vcsim, tmp_path: Path) -> None:
    """After a first run, vCenter's CA file is replaced by another CA's: resume exits 2 and the journal is unchanged."""
    import shutil
    import sqlite3

    config = write_lab_config(tmp_path / "lab", vcsim)
    ca = tmp_path / "vcenter-ca.pem"  # the configuration's own copy (the fixture's CA file is shared)
    shutil.copy(vcsim.ca_file, ca)
    config.write_text(config.read_text().replace(str(vcsim.ca_file), str(ca)))
    code, out = _run(config, "run", "pexip-mgmt", "--until", "deployed")
    assert code == 0, out
    journal = _journal(config)
    events = sqlite3.connect(journal).execute("select count(*) from events").fetchone()[0]
    other = make_test_pki(tmp_path / "other", ca_name="Some Other CA")
    shutil.copy(other.ca_file, ca)  # same path in the configuration: the definition is unchanged
    code, out = _run(config, "resume", "--all")
    assert code == 2, out
    assert "\n  vcenter: " in out and "not trusted" in out, out
    assert sqlite3.connect(journal).execute("select count(*) from events").fetchone()[0] == events


def test_validate_asks_vcenter_what_run_asks_and_writes_nothing(vcsim: Vcsim, tmp_path: Path) -> None:
    """#12 item 4: validate checks TLS trust and the inventory as run's preflight does: the lab passes, another CA is
    named by its field, and neither writes anything."""
    config = write_lab_config(tmp_path / "lab", vcsim)
    code, out = _run(config, "validate")
    assert code == 0, out
    other = make_test_pki(tmp_path / "other", ca_name="Some Other CA")
    before = _ours(tmp_path)
    config.write_text(config.read_text().replace(str(vcsim.ca_file), str(other.ca_file)))
    code, out = _run(config, "validate")
    assert code == 2 and "\n  vcenter: " in out and "not trusted" in out, out
    assert _ours(tmp_path) == before
