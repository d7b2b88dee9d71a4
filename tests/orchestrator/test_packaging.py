"""Packaging: the wheel carries the lab's Go main and the policy; an installed copy runs `lab up` on its own.

The installed copy lives in a fresh virtualenv made by ``python -m venv --without-pip``: its own
site-packages holds only this project, installed from the wheel with ``pip --python``. The
pinned dependencies are not downloaded again (that needs PyPI and a minute or more): a path
line in the venv points at the development venv's site-packages. A path line does not run that
directory's ``.pth`` files, so the editable install of the checkout there stays out of it, and
the test checks that ``orchestrator`` is imported from the venv. Building the wheel needs pip's
isolated build environment (setuptools from the package index, cached after the first run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from orchestrator.lab import REPO, go_available

pytestmark = pytest.mark.slow

PACKAGES = ("orchestrator", "machines", "adapters", "journal", "config")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of the sources (the checkout gets no build/ or egg-info)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = dist.glob("*.whl")
    return built


def test_the_wheel_carries_the_labs_go_main_and_the_policy(wheel: Path) -> None:
    """main.go, the packaged policy and the example configuration are in the wheel; the entry point too."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "orchestrator/lab/vcsim/main.go" in names
    assert {"config/secure-mode-policy.toml", "config/example.toml", "config/controls.toml"} <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "orchestrator = orchestrator.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``orchestrator`` script of a fresh virtualenv that has the wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin" / "orchestrator"


def _run(script: Path, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "PYTHON"))}
    return subprocess.run(
        [str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_an_installed_copy_runs_away_from_the_checkout(installed: Path, tmp_path: Path) -> None:
    """The venv's `orchestrator` is the installed one: --version, and a simulation in an empty directory."""
    python = str(installed.with_name("python"))
    where = subprocess.run(
        [python, "-c", "import orchestrator; print(orchestrator.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert where.startswith(str(installed.parents[1])), where
    version = _run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("orchestrator 0."), version
    simulated = _run(installed, "-q", "simulate", "--nodes", "2", cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr[-3000:]


@pytest.mark.vcsim
def test_an_installed_copy_brings_the_lab_up_and_down(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lab up` of an installed copy builds vcsim from the packaged main.go; `lab down --reset` stops it."""
    if (why := go_available()) is not None:
        pytest.skip(f"vcsim cannot be built: {why}")
    monkeypatch.setenv("GOCACHE", os.environ.get("GOCACHE") or str(REPO / ".lab" / "gocache"))  # warm cache
    try:
        up = _run(installed, "lab", "up", "--dir", str(tmp_path / "lab"), "--json", cwd=tmp_path, timeout=300)
        assert up.returncode == 0, up.stderr[-3000:]
        assert (tmp_path / "lab" / "bin" / "vcsim").is_file()
        status = _run(installed, "lab", "status", "--dir", str(tmp_path / "lab"), cwd=tmp_path)
        assert "orchestrator lab up" not in status.stdout and "vcenter: https://127.0.0.1:" in status.stdout
        assert "ldap: ldap://127.0.0.1:" in status.stdout and "pexip_api: https://" in status.stdout
        assert "[not running]" not in status.stdout, status.stdout  # slapd and the network simulators too
    finally:
        down = _run(installed, "lab", "down", "--dir", str(tmp_path / "lab"), "--reset", "--json", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert '"stopped": true' in down.stdout
