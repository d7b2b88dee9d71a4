"""The layers' one-way dependencies and the packages' public names, pinned."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each layer may import of ours (DESIGN.md "Layers"; STYLE.md "Layering").
ALLOWED = {
    "machines": {"machines"},  # pure: not even config
    "journal": {"journal", "config"},
    "adapters": {"adapters", "config"},
    "config": {"config"},
    "orchestrator": {"orchestrator", "machines", "journal", "adapters", "config"},
}
NO_IO_IN_MACHINES = {"asyncio", "sqlite3", "socket", "aiohttp", "os", "time", "random", "subprocess", "transitions"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    """No module of a layer imports a layer it must not know."""
    ours = set(ALLOWED)
    for path in (ROOT / layer).rglob("*.py"):
        bad = (_imports(path) & ours) - ALLOWED[layer]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_machines_are_pure() -> None:
    """machines/ does no I/O: no asyncio, sqlite, sockets, clock or randomness."""
    for path in (ROOT / "machines").rglob("*.py"):
        assert not (_imports(path) & NO_IO_IN_MACHINES), path.name


@pytest.mark.parametrize("package", ["machines", "journal", "adapters", "config", "orchestrator", "orchestrator.steps"])
def test_every_package_declares_all(package: str) -> None:
    """Each package says what is public, and everything it names exists."""
    module = importlib.import_module(package)
    assert hasattr(module, "__all__")
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.__all__ names {name} which does not exist"
