"""Fixtures that build and start VMware's vCenter simulator (vcsim) for the vSphere tests.

vcsim is built once per machine (cached under ``.lab/bin``, rebuilt when
``lab/vcsim/main.go`` changes) and started per test on a free loopback port with TLS and
the lab's test CA: start-up and inventory shaping take about 0.1 s, so every test that
changes the world gets a fresh one. Tests that only read share one per session.
Without the Go toolchain and govmomi sources they are skipped, saying what to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _sim_factory import make_deployment
from _slapd import Slapd, running_slapd
from _vcsim import lab_deployment, started_vcsim

from adapters.sim.world import SimWorld
from config.model import Deployment
from orchestrator.lab import REPO, Pki, Vcsim, build_vcsim, go_available, make_test_pki


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    """The project's vcsim, built (or taken from the cache)."""
    why = go_available()
    if why is not None:
        pytest.skip(f"vcsim cannot be built: {why}")
    return build_vcsim(REPO / ".lab")


@pytest.fixture(scope="session")
def vcsim_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The lab's test CA and vcsim's 2048-bit server certificate."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def vcsim_session(vcsim_binary: Path, vcsim_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vcsim]:
    """One vcsim for the whole session, for tests that change nothing."""
    vc = started_vcsim(tmp_path_factory.mktemp("vcsim-session"), vcsim_binary, vcsim_pki)
    yield vc
    vc.stop()


@pytest.fixture
def vcsim(vcsim_binary: Path, vcsim_pki: Pki, tmp_path: Path) -> Iterator[Vcsim]:
    """A fresh vcsim for one test: the lab inventory, nothing of ours yet."""
    vc = started_vcsim(tmp_path / "vcsim", vcsim_binary, vcsim_pki)
    yield vc
    vc.stop()


@pytest.fixture
def deployment(vcsim: Vcsim, tmp_path: Path) -> Deployment:
    """The lab deployment against the fresh vcsim."""
    return lab_deployment(vcsim, tmp_path / "lab")


@pytest.fixture(scope="session")
def session_deployment(vcsim_session: Vcsim, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """The lab deployment against the session's vcsim."""
    return lab_deployment(vcsim_session, tmp_path_factory.mktemp("lab"))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[SimWorld]:
    """A fresh simulated world in the test's temp dir, closed afterwards."""
    w = SimWorld.open(tmp_path / "world.sqlite")
    yield w
    w.close()


# --- slapd: the real directory of the LDAP tests (tests/adapters/_slapd.py) -----------------


@pytest.fixture(scope="session")
def slapd_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and slapd's server certificate for 127.0.0.1/localhost."""
    return make_test_pki(tmp_path_factory.mktemp("slapd-pki"), name="slapd", ca_name="LDAP Test CA")


@pytest.fixture(scope="session")
def session_slapd(slapd_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Slapd, Deployment]]:
    """One slapd for the session's tests that change nothing, and the deployment pointed at it."""
    work = tmp_path_factory.mktemp("slapd-session")
    deployment = make_deployment(1, work)
    with running_slapd(work / "slapd", deployment.ldap, slapd_pki) as server:
        yield server, server.pointed_at(deployment)


@pytest.fixture
def slapd(slapd_pki: Pki, tmp_path: Path) -> Iterator[tuple[Slapd, Deployment]]:
    """A fresh slapd for one test that changes or stops it, and the deployment pointed at it."""
    deployment = make_deployment(1, tmp_path)
    with running_slapd(tmp_path / "slapd", deployment.ldap, slapd_pki) as server:
        yield server, server.pointed_at(deployment)
