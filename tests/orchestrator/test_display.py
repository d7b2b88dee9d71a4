"""The live view: node names in full, problems first when rows do not fit, what each node does and waits for."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from journal import kinds
from machines.lifecycle import LDAP_AUTHENTICATED, NEW
from orchestrator.display import Progress

MANAGER = "pexip-management-node.secure-lab.example.com"


def _conf(i: int) -> str:
    return f"pexip-conferencing-node-{i:03d}.secure-lab.example.com"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _screen(progress: Progress, width: int, height: int) -> str:
    console = Console(record=True, width=width, height=height, file=io.StringIO())
    console.print(progress.render(width, height))
    return console.export_text()


def _fleet(conferencing: int, errors: dict[str, tuple[int, str | None]] | None = None) -> tuple[Progress, Clock]:
    clock = Clock()
    nodes = [(MANAGER, "management"), *((_conf(i), "conferencing") for i in range(1, conferencing + 1))]
    progress = Progress(
        nodes,
        {n: NEW for n, _ in nodes},
        live=False,
        stream=io.StringIO(),
        clock=clock,
        errors=lambda n: (errors or {}).get(n, (0, None)),
        max_attempts=5,
    )
    return progress, clock


def _thirty_with_one_failure() -> Progress:
    """A manager past hardened, 28 conferencing nodes done and one failed at the end of the list."""
    progress, clock = _fleet(29, {_conf(29): (1, "lock_bios: BIOS password rejected by the host")})
    progress(MANAGER, LDAP_AUTHENTICATED, None, kinds.STEP_COMMITTED)
    for i in range(1, 29):
        progress(_conf(i), LDAP_AUTHENTICATED, None, kinds.STEP_COMMITTED)
    progress(_conf(29), "bios_locking", "lock_bios", kinds.STEP_STARTED)
    progress(_conf(29), "failed", "lock_bios", kinds.STEP_FAILED)
    return progress


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 45)])
def test_node_names_are_never_cut(width: int, height: int) -> None:
    """At 80x24 and 160x45 every name shown is whole, and no line is wider than the terminal."""
    progress, _ = _fleet(3)
    screen = _screen(progress, width, height)
    for name in (MANAGER, _conf(1), _conf(2), _conf(3)):
        assert name in screen
    assert max(len(line) for line in screen.splitlines()) <= width


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 45)])
def test_the_failed_node_is_visible_among_30(width: int, height: int) -> None:
    """30 nodes, the failed one last in the deployment: on screen with its error; the rest summarised at 24 rows."""
    screen = _screen(_thirty_with_one_failure(), width, height)
    assert _conf(29) in screen
    assert "failed at lock_bios" in screen
    assert len(screen.splitlines()) <= height
    if height == 24:
        assert "more: " in screen and f"{LDAP_AUTHENTICATED}" in screen.split("more: ")[1]
        assert screen.index(_conf(29)) < screen.index(_conf(1))
    else:
        assert all(_conf(i) in screen for i in range(1, 30))


def test_blocked_nodes_say_what_they_wait_for() -> None:
    """Conferencing nodes before the manager is hardened: `waits for <manager>: hardened`, not `new`."""
    progress, _ = _fleet(2)
    progress(MANAGER, "deploying", "deploy_ova", kinds.STEP_STARTED)
    screen = _screen(progress, 160, 45)
    line = next(line for line in screen.splitlines() if _conf(1) in line)
    assert f"waits for {MANAGER}: hardened" in line


def test_a_running_step_shows_its_elapsed_time_and_retries_their_attempt_and_error() -> None:
    """A step 12 s in shows `12s`; a retried one `attempt 2/5` with the last error."""
    progress, clock = _fleet(1, {MANAGER: (1, "vsphere: host esxi-01 unreachable")})
    progress(MANAGER, "bios_locking", "lock_bios", kinds.STEP_STARTED)
    clock.t += 12
    screen = _screen(progress, 160, 45)
    assert "lock_bios 12s" in screen
    progress(MANAGER, "bios_locking", "lock_bios", kinds.STEP_RETRY)
    progress(MANAGER, "bios_locking", "lock_bios", kinds.STEP_STARTED)
    screen = _screen(progress, 160, 45)
    assert "attempt 2/5: vsphere: host esxi-01 unreachable" in screen


def test_a_waiting_gate_shows_the_command_that_opens_it() -> None:
    """A node at the security-wizard gate: the `orchestrator approve` command beside it."""
    progress, _ = _fleet(1)
    progress(MANAGER, "awaiting_approval", "security_wizard", kinds.GATE_WAITING)
    for width, height in ((80, 24), (160, 45)):
        words = " ".join(_screen(progress, width, height).split())  # the phrase may fold
        assert f"orchestrator approve {MANAGER} security_wizard --by WHO" in words, width


def test_the_count_view_names_failed_and_waiting_nodes() -> None:
    """Past 40 nodes the view counts states, and names the failed and the waiting nodes."""
    progress, _ = _fleet(60)
    progress(_conf(17), "failed", "lock_bios", kinds.STEP_FAILED)
    progress(MANAGER, "awaiting_approval", "security_wizard", kinds.GATE_WAITING)
    screen = _screen(progress, 160, 45)
    assert f"failed: {_conf(17)}" in screen
    assert f"waiting: {MANAGER} (security_wizard)" in screen


def test_plain_lines_report_retries_and_gate_commands() -> None:
    """Without a terminal: one line per milestone, retry (attempt N/M and error) and gate (its command)."""
    out = io.StringIO()
    progress = Progress(
        [(MANAGER, "management")],
        {MANAGER: NEW},
        live=False,
        stream=out,
        max_attempts=5,
        errors=lambda n: (1, "pexip: login failed"),
    )
    with progress:
        progress(MANAGER, "installing", "verify_admin_login", kinds.STEP_STARTED)
        progress(MANAGER, "installing", "verify_admin_login", kinds.STEP_RETRY)
        progress(MANAGER, "awaiting_approval", "security_wizard", kinds.GATE_WAITING)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("verify_admin_login: attempt 1/5: pexip: login failed")
    assert lines[1].endswith(f"orchestrator approve {MANAGER} security_wizard --by WHO --reason TEXT")


def test_the_first_ctrl_c_says_at_once_what_the_run_waits_for() -> None:
    """`stopping()` (the first signal) prints the steps in flight at once, and the header keeps saying it."""
    out = io.StringIO()
    progress, _ = _fleet(2)
    progress.stream = out
    progress(MANAGER, "bios_locking", "lock_bios", kinds.STEP_STARTED)
    progress.stopping()
    assert f"waiting for 1 step(s) in flight to finish: {MANAGER} (lock_bios)" in out.getvalue()
    assert "stopping: waiting for 1 step(s)" in " ".join(_screen(progress, 160, 45).split())


def test_ctrl_c_reaches_the_display_through_the_signal_handler() -> None:
    """The run's SIGINT handler calls the observer's `stopping` (api._install_signal_handlers)."""
    import asyncio
    import os
    import signal

    from orchestrator import api

    calls: list[str] = []

    class Engine:
        observer = type("Observer", (), {"stopping": lambda self: calls.append("stopping")})()

        def stop(self) -> None:
            calls.append("stop")

    async def main() -> None:
        remove = api._install_signal_handlers(Engine())  # type: ignore[arg-type]
        try:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.05)
        finally:
            remove()

    asyncio.run(main())
    assert calls == ["stop", "stopping"]


def test_an_interrupted_run_ends_with_a_line_that_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """The last line of an interrupted run says interrupted and resume --all, not "a step failed"."""
    from machines.plan import Stopped
    from orchestrator import _format
    from orchestrator.engine import RunReport

    report = RunReport(outcomes={MANAGER: Stopped("interrupted: stopped before the next step")}, interrupted=True)
    assert _format.report(report, as_json=False) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("interrupted") and "resume --all" in last and "a step failed" not in last
