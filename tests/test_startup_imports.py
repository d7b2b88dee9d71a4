"""Start-up stays light: the command line loads the heavy libraries only when a command uses them (#11).

Checked on ``sys.modules`` in a fresh interpreter, which is robust where a timing test is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

HEAVY = ("pyVmomi", "aiohttp", "cryptography", "adapters.sim", "ldap3")

_PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n"))
{body}
"""


def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """This interpreter on ``args`` in ``cwd``: this tree's code, no configuration or journal from the environment."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("ORCHESTRATOR_CONFIG", None)
    env.pop("ORCHESTRATOR_JOURNAL", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120
    )


def _modules(body: str, cwd: Path) -> set[str]:
    done = _python(["-c", _PROBE.format(body=body)], cwd)
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
    assert [p for p in HEAVY + ("journal", "orchestrator.engine", "rich", "hashlib") if _loaded(modules, p)] == []


_EVERY_HELP = """
import click
from orchestrator.cli import cli

def paths(command, path):
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from paths(sub, [*path, name])

every = list(paths(cli, []))
for path in every:
    try:
        cli.main([*path, "--help"], prog_name="orchestrator", standalone_mode=False)
    except SystemExit:
        pass
if len(every) > 20:  # the groups and their commands: the marker says the loop ran them all
    import sys, types
    sys.modules["helped_every_command"] = types.ModuleType("helped_every_command")
"""


def test_every_commands_help_loads_no_heavy_library(tmp_path: Path) -> None:
    """`orchestrator GROUP COMMAND --help`, for every group and command, loads neither the journal, rich nor asyncio."""
    modules = _modules(_EVERY_HELP, tmp_path)
    assert "helped_every_command" in modules
    unwanted = HEAVY + (
        "journal",
        "orchestrator.engine",
        "orchestrator._session",
        "rich",
        "asyncio",
        "config.model",
        "hashlib",
    )
    assert [p for p in unwanted if _loaded(modules, p)] == []


# What `status` reads a journal without (#11): each was on its path once and cost start-up time.
STATUS_UNWANTED = (
    "pyVmomi",
    "aiohttp",
    "adapters",  # adapters.base (the Protocols), the bootstrap store, the simulated world
    "orchestrator.engine",
    "orchestrator._session",  # the session's wiring: status opens the journal through _settings alone
    "orchestrator._trust",
    "orchestrator.wiring",
    "orchestrator._access",
    "config.model",  # with --journal, no configuration is read
    "config.load",
    "cryptography",  # a read-only journal checks no signature
    "structlog",
    "sqlite_utils",
    "asyncio",  # 20-30 ms of start: a syslog sender, the bootstrap store and the session import it where used
    "tempfile",  # journal._files writes atomically; status writes nothing
    "socket",  # journal._leases asks the host name when it takes or clears a lease
)


@pytest.mark.parametrize(
    ("args", "rich"),
    [
        (["status", "--json"], False),  # the JSON contract: without rich too
        (["status"], True),  # the table: rich draws it
    ],
)
def test_status_loads_neither_engine_nor_adapters(tmp_path: Path, args: list[str], rich: bool) -> None:
    """`orchestrator status` on a journal reads it without the engine, the session, the trust, adapters or config."""
    made = _python(["-m", "orchestrator.cli", "simulate", "--nodes", "1", "--json"], tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    argv = ["orchestrator", "--journal", "simulation.journal.sqlite", *args]
    modules = _modules(f"import sys; sys.argv = {argv!r}\nfrom orchestrator.cli import main\nmain()", tmp_path)
    assert "journal" in modules  # it did read the journal
    assert "machines.plan" in modules  # and said what comes next
    assert [p for p in STATUS_UNWANTED if _loaded(modules, p)] == []
    assert _loaded(modules, "rich") is rich


def test_status_with_a_configuration_reads_it_without_the_session_or_adapters(tmp_path: Path) -> None:
    """`orchestrator status` that finds its journal through ./orchestrator.toml loads the configuration and no more."""
    for args in (["init", "--sim"], ["run"]):
        done = _python(["-m", "orchestrator.cli", *args], tmp_path)
        assert done.returncode in (0, 3), done.stderr[-2000:]  # run: 3, waiting on the security wizard's gate
    body = "import sys; sys.argv = ['orchestrator', 'status', '--json']\nfrom orchestrator.cli import main\nmain()"
    modules = _modules(body, tmp_path)
    assert "config.load" in modules and "journal" in modules  # it read the configuration and the journal
    unwanted = [p for p in STATUS_UNWANTED if p not in ("config.model", "config.load")]
    assert [p for p in (*unwanted, "difflib", "shutil") if _loaded(modules, p)] == []
