"""Start-up stays light: the command line loads the heavy libraries only when a command uses them (#11).

Checked on ``sys.modules`` in a fresh interpreter, which is robust where a timing test is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEAVY = ("pyVmomi", "aiohttp", "cryptography", "adapters.sim", "ldap3")

_PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n"))
{body}
"""


def _modules(body: str, cwd: Path) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("ORCHESTRATOR_CONFIG", None)
    env.pop("ORCHESTRATOR_JOURNAL", None)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(body=body)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    line = next((ln for ln in done.stderr.splitlines() if ln.startswith("MODULES ")), None)
    assert line is not None, done.stderr[-2000:]
    return set(json.loads(line[len("MODULES ") :]))


def _loaded(modules: set[str], package: str) -> bool:
    return any(m == package or m.startswith(package + ".") for m in modules)


def test_importing_the_cli_loads_no_heavy_library(tmp_path: Path) -> None:
    """`import orchestrator.cli` imports neither pyVmomi, aiohttp, cryptography nor the simulated world."""
    modules = _modules("import orchestrator.cli", tmp_path)
    assert "orchestrator.cli" in modules
    assert [p for p in HEAVY if _loaded(modules, p)] == []
    assert not _loaded(modules, "asyncio")
    assert "config.load" not in modules  # `config.errors` no longer drags the whole loader in


def test_help_loads_no_heavy_library(tmp_path: Path) -> None:
    """`orchestrator --help` runs without pyVmomi, aiohttp, cryptography, the world, the journal or the engine."""
    modules = _modules(
        "import sys; sys.argv = ['orchestrator', '--help']\nfrom orchestrator.cli import main\nmain()", tmp_path
    )
    assert [p for p in HEAVY + ("journal", "orchestrator.engine", "rich") if _loaded(modules, p)] == []


def test_status_json_loads_neither_engine_nor_adapters(tmp_path: Path) -> None:
    """`orchestrator status --json` on a journal reads it without the engine, the logs, rich or any adapter library."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    made = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "simulate", "--nodes", "1", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    body = (
        "import sys; sys.argv = ['orchestrator', '--journal', 'simulation.journal.sqlite', 'status', '--json']\n"
        "from orchestrator.cli import main\nmain()"
    )
    modules = _modules(body, tmp_path)
    assert "journal" in modules  # it did read the journal
    unwanted = (
        "pyVmomi",
        "aiohttp",
        "adapters.sim",
        "adapters.vsphere",
        "orchestrator.engine",
        "structlog",
        "rich",
        "sqlite_utils",
        "asyncio",  # 20-30 ms of start: a syslog sender, the bootstrap store and the session import it where used
    )
    assert [p for p in unwanted if _loaded(modules, p)] == []
