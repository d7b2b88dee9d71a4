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


# The twins of adapters/sim/: each stands in for one outside system. Shared helpers (world,
# _pki, _pexip_schema, _manager, _pexip_login) are not twins and may be imported by any of them.
TWINS = {"vsphere", "pexip", "console", "ldap", "ca", "bridge", "provisioning", "syslog"}


def _modules_imported(path: Path, package: str) -> set[str]:
    """Full dotted names of what ``path`` (a module of ``package``) imports; ``from a.b import c``
    counts ``a.b`` and ``a.b.c``, relative imports are resolved against ``package``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_a_twin_never_imports_another_twin(twin: str) -> None:
    """A simulated twin is handed the adapters it needs; it imports no other twin module."""
    path = ROOT / "adapters" / "sim" / f"{twin}.py"
    others = {f"adapters.sim.{t}" for t in TWINS - {twin}}
    bad = _modules_imported(path, "adapters.sim") & others
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_every_twin_module_is_known() -> None:
    """Every public module of adapters/sim/ but the world is a twin the import rule above covers."""
    public = {p.stem for p in (ROOT / "adapters" / "sim").glob("*.py") if not p.stem.startswith("_")}
    assert public - {"world"} == TWINS


@pytest.mark.parametrize("package", ["machines", "journal", "adapters", "config", "orchestrator", "orchestrator.steps"])
def test_every_package_declares_all(package: str) -> None:
    """Each package says what is public, and everything it names exists."""
    module = importlib.import_module(package)
    assert hasattr(module, "__all__")
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.__all__ names {name} which does not exist"
