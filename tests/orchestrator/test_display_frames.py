"""The live view at 80x24 and 160x45: the count view uncut, every kind of problem on screen, one final frame."""

from __future__ import annotations

import io
import re
import time

import pytest

from journal import kinds
from machines.lifecycle import LDAP_AUTHENTICATED, MILESTONES, NEW
from orchestrator.display import Progress
from tests.orchestrator.test_display import MANAGER, _conf, _fleet, _screen

STATES = [NEW, *MILESTONES, "in progress", "waiting", "failed"]
LONG_ERROR = "vsphere: host esxi-01.secure-lab.example.com unreachable after 30 s (connection refused by 10.99.0.21)"


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 45)])
def test_the_count_view_names_every_state_whole_and_fits(width: int, height: int) -> None:
    """60 nodes: no state name cut to `dep…`, the bar on its own line, failed and waiting named, within the screen."""
    progress, _ = _fleet(60)
    progress(_conf(17), "failed", "lock_bios", kinds.STEP_FAILED)
    progress(MANAGER, "awaiting_approval", "security_wizard", kinds.GATE_WAITING)
    screen = _screen(progress, width, height)
    lines = screen.splitlines()
    assert "…" not in screen
    words = " ".join(screen.split())
    assert all(state in words for state in STATES), screen
    assert re.fullmatch(r"[━─]+ +\d+%", lines[1].strip()), lines[1]
    assert f"failed: {_conf(17)}" in screen and f"waiting: {MANAGER} (security_wizard)" in screen
    assert max(len(line) for line in lines) <= width and len(lines) <= height


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 45)])
def test_among_30_every_problem_is_on_screen_first(width: int, height: int) -> None:
    """Failed, waiting, retrying and blocked nodes among 30 are all shown, the failed first, names whole."""
    progress, clock = _fleet(29, {_conf(20): (2, LONG_ERROR), _conf(29): (5, "lock_bios: BIOS password rejected")})
    progress(MANAGER, LDAP_AUTHENTICATED, None, kinds.STEP_COMMITTED)
    for i in range(1, 29):
        progress(_conf(i), LDAP_AUTHENTICATED, None, kinds.STEP_COMMITTED)
    progress(_conf(29), "failed", "lock_bios", kinds.STEP_FAILED)
    progress(_conf(25), "awaiting_approval", "security_wizard", kinds.GATE_WAITING)
    progress(_conf(20), "bios_locking", "lock_bios", kinds.STEP_STARTED)
    progress(_conf(20), "bios_locking", "lock_bios", kinds.STEP_RETRY)
    clock.t += 12
    screen = _screen(progress, width, height)
    assert len(screen.splitlines()) <= height and max(len(line) for line in screen.splitlines()) <= width
    for node in (_conf(29), _conf(25), _conf(20)):
        assert node in screen, (node, screen)
    if height == 24:  # not all fit: the problems first (failed, waiting, then the retried one)
        assert screen.index(_conf(29)) < screen.index(_conf(25)) < screen.index(_conf(20)) < screen.index(_conf(1))
        assert "more: " in screen
    assert "failed at lock_bios: lock_bios: BIOS password rejected" in screen
    assert f"orchestrator approve {_conf(25)} security_wizard" in " ".join(screen.split())
    assert "lock_bios 12s" in screen and "attempt 2/5: vsphere: host esxi-01" in screen


def test_a_blocked_row_at_80_columns_says_what_it_waits_for_in_full() -> None:
    """At 80x24 (two lines per node) a blocked node reads `waits for <manager>: hardened`, not `new`."""
    progress, _ = _fleet(3)
    progress(MANAGER, "deploying", "deploy_ova", kinds.STEP_STARTED)
    screen = _screen(progress, 80, 24)
    assert screen.count(f"waits for {MANAGER}: hardened") == 3
    assert "new" not in screen.replace("nodes", "")


def test_a_long_retry_error_folds_under_its_node_and_stays_whole() -> None:
    """At 80 columns the phrase of a retried step folds, indented under its node, the error whole."""
    progress, clock = _fleet(1, {MANAGER: (2, LONG_ERROR)})
    progress(MANAGER, "bios_locking", "lock_bios", kinds.STEP_STARTED)
    progress(MANAGER, "bios_locking", "lock_bios", kinds.STEP_RETRY)
    clock.t += 3
    lines = _screen(progress, 80, 24).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(MANAGER))
    phrase = lines[at + 1 : at + 3]
    assert all(line.startswith("  ") for line in phrase), phrase
    assert " ".join(f"lock_bios 3s attempt 2/5: {LONG_ERROR}".split()) in " ".join(" ".join(phrase).split())


class _Terminal(io.StringIO):
    """A stream that says it is a terminal: rich draws the live frames with cursor moves, as on a screen."""

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_final_frame_is_drawn_once_and_ctrl_c_is_said_at_once() -> None:
    """After the last cursor move the final frame appears once; the first Ctrl-C's message is printed above it."""
    out = _Terminal()
    progress = Progress([(MANAGER, "management"), (_conf(1), "conferencing")], {}, stream=out, live=True)
    with progress:
        progress(MANAGER, "bios_locking", "lock_bios", kinds.STEP_STARTED)
        time.sleep(0.3)  # a refresh or two (4 per second)
        progress.stopping()
        said = out.getvalue()
        progress(MANAGER, "bios_locked", None, kinds.STEP_COMMITTED)
    assert f"stopping (Ctrl-C again to stop now): waiting for 1 step(s) in flight to finish: {MANAGER}" in " ".join(
        re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", said).split()
    )
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue().split("\x1b[1A")[-1])
    assert final.count("nodes ldap_authenticated") == 1, final
    assert final.count(MANAGER) == 2 and "waits for" in final  # its row, and the blocked row naming it


def test_no_frame_is_taller_or_wider_than_its_terminal() -> None:
    """Any size from 60x12 to 200x50 with every kind of row: the frame fits, the failed node is on it."""
    progress, _ = _fleet(29, {_conf(3): (2, LONG_ERROR), _conf(29): (5, LONG_ERROR)})
    progress(MANAGER, "awaiting_approval", "security_wizard", kinds.GATE_WAITING)
    progress(_conf(29), "failed", "lock_bios", kinds.STEP_FAILED)
    for width in (60, 80, 100, 120, 160, 200):
        for height in (12, 16, 24, 36, 50):
            lines = _screen(progress, width, height).splitlines()
            assert len(lines) <= height and max(len(line) for line in lines) <= width, (width, height)
            assert any(line.startswith(_conf(29)) for line in lines), (width, height)


def test_a_retrying_manager_comes_before_the_nodes_blocked_on_it() -> None:
    """30 nodes at 80x24, the Manager retrying and 29 blocked on it: the Manager's row and its error are on screen."""
    progress, _ = _fleet(29, {MANAGER: (3, LONG_ERROR)})
    for i in range(1, 30):  # the Manager last in the order it reports, first in the deployment
        progress(_conf(i), NEW, None, kinds.STEP_COMMITTED)
    progress(MANAGER, "reserving", "reserve_resources", kinds.STEP_STARTED)
    progress(MANAGER, "reserving", "reserve_resources", kinds.STEP_RETRY)
    progress.order = [*progress.order[1:], MANAGER]  # listed last: it must still come first
    lines = _screen(progress, 80, 24).splitlines()
    assert lines[1].startswith(MANAGER), lines[:3]
    assert f"attempt 3/5: {LONG_ERROR}" in " ".join(" ".join(lines[2:5]).split())
    assert any("waits for" in line for line in lines) and "more: " in lines[-1]
