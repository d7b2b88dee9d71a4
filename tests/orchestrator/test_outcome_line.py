"""The run's last line names the nodes: the failed ones to resume, the waiting one's gate and its command."""

from __future__ import annotations

import pytest

from machines.plan import Action, Blocked, Done, Stopped, Wait
from orchestrator import _format
from orchestrator.engine import RunReport

GATE = "waiting on gate security_wizard; approve it: orchestrator approve pexip-mgr security_wizard --by WHO"


@pytest.mark.parametrize(
    ("outcomes", "code", "last"),
    [
        (  # one failed node, the others blocked on it: resume that one
            {"pexip-mgr": Stopped("failed: x"), "pexip-conf-01": Blocked("waits")},
            1,
            "a step failed on pexip-mgr (see above); fix the cause, then `orchestrator resume pexip-mgr`",
        ),
        (  # two failed: both named
            {"a": Stopped("failed"), "b": Stopped("failed"), "c": Done("at ldap_authenticated")},
            1,
            "a step failed on 2 nodes (a, b); fix each, then `orchestrator resume NODE`",
        ),
        (  # one at a gate: its command
            {"pexip-mgr": Wait(GATE, gate="security_wizard"), "pexip-conf-01": Blocked("waits")},
            3,
            f"waiting on a gate: pexip-mgr is {GATE}; then `orchestrator resume --all`",
        ),
        (  # five at gates: counted, three named
            {f"n{i}": Wait("waiting on gate csr_signed", gate="csr_signed") for i in range(5)},
            3,
            "waiting on a gate: 5 nodes (n0, n1, n2 (+2 more)); open each (see above), then "
            "`orchestrator resume --all`",
        ),
        ({"a": Done("at ldap_authenticated")}, 0, "done: every node reached its target state"),
    ],
)
def test_the_last_line_names_what_to_do_to_which_node(
    outcomes: dict[str, Action], code: int, last: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failed nodes by name with their resume command; a single gate with the command that opens it."""
    report = RunReport(outcomes=outcomes, blocked_by=("pexip-mgr", outcomes.get("pexip-mgr", Done("x"))))
    assert _format.report(report, as_json=False) == code
    assert capsys.readouterr().out.splitlines()[-1] == last
