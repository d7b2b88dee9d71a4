"""Progress: a live view of a run on a terminal (rich), plain lines otherwise.

Each row names its node in full and says what it does now: the step and how long it has run,
``attempt N/M`` and the last error while a step is retried, the command that opens a gate the
node waits on, ``waits for pexip-mgr: hardened`` for a node blocked on the Management Node.
When the rows do not fit the terminal, failed, waiting and blocked nodes come first and the
rest are summarised in one line; past ``_GRID_LIMIT`` nodes the view is a count per state that
names the failed and waiting nodes. Rendering reads only the observer's notes: a burst of
commits costs nothing, and ``render(width, height)`` is what the tests look at.
"""

from __future__ import annotations

import io
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from journal import kinds
from machines.lifecycle import (
    FAILED,
    GATES,
    MILESTONES,
    NEW,
    TARGET_OF,
    WAITING,
    management_lacks,
    milestone_index,
)

__all__ = ["Progress"]

_GRID_LIMIT = 40  # past this many nodes, the grid becomes a count per state
_CHROME = 6  # lines of the grid that are not node rows: header, table borders and heading, summary
_GATE_OF_STATE = {spec["state"]: gate for gate, spec in GATES.items()}

_MEASURE = Console(file=io.StringIO(), width=1000)  # measures how many lines a phrase folds into; draws nothing
# Sort order of the rows when they do not all fit: what needs a person first.
_FAILED, _WAITING, _RETRYING, _BLOCKED, _RUNNING, _IDLE = range(6)


class Progress:
    """Observer of the engine's commits. Use as a context manager around the run.

    Args:
        nodes: ``(name, role)`` in the deployment's order.
        states: each node's state at the start (from the journal).
        errors: reads a node's ``(attempt, last_error)`` from the journal (for retries and failures).
        max_attempts: the policy's ``retry.max_attempts``, shown as ``attempt N/M``.
    """

    def __init__(
        self,
        nodes: list[tuple[str, str]],
        states: dict[str, str],
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        errors: Callable[[str], tuple[int, str | None]] | None = None,
        max_attempts: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stdout
        self.live_mode = self.stream.isatty() if live is None else live
        self.roles = dict(nodes)
        self.order = [n for n, _ in nodes]
        self.states = dict(states)
        for n in self.order:
            self.states.setdefault(n, NEW)
        self.steps: dict[str, str | None] = {n: None for n in self.order}
        self.failed_at: dict[str, str] = {}
        self.step_since: dict[str, float] = {}
        self.attempts: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        self.management = next((n for n, role in nodes if role == "management"), None)
        self._read_errors = errors
        self.max_attempts = max_attempts
        self.clock = clock
        self.started = clock()
        self._live: Live | None = None
        self.interrupted = False

    def __enter__(self) -> Progress:
        if self.live_mode:
            console = Console(file=self.stream)
            self._live = Live(
                get_renderable=lambda: self.render(console.width, console.height),
                console=console,
                refresh_per_second=4,
                transient=False,
                vertical_overflow="visible",
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)  # draws the final frame once

    # --- the observer ---------------------------------------------------------------------

    def __call__(self, node: str, state: str, step: str | None, kind: str) -> None:
        if not node:
            return
        previous = self.states.get(node)
        if state == FAILED and previous:
            self.failed_at[node] = previous
        if step != self.steps.get(node):
            self.step_since[node] = self.clock()
            self.attempts[node] = 0
            self.errors.pop(node, None)
        if kind == kinds.STEP_STARTED:
            self.attempts[node] = self.attempts.get(node, 0) + 1
        if kind in (kinds.STEP_RETRY, kinds.STEP_FAILED) and self._read_errors is not None:
            attempt, error = self._read_errors(node)
            self.attempts[node] = max(self.attempts.get(node, 0), attempt)
            if error:
                self.errors[node] = error
        self.states[node] = state
        self.steps[node] = step
        moved = state != previous and (state in MILESTONES or state == FAILED or kind == kinds.GATE_WAITING)
        if self._live is None and (moved or kind == kinds.STEP_RETRY):
            print(
                f"{self.clock() - self.started:7.2f}s {node}: {self._plain(node, state, step, kind, previous)}",
                file=self.stream,
                flush=True,
            )

    def _plain(self, node: str, state: str, step: str | None, kind: str, previous: str | None) -> str:
        if kind == kinds.STEP_RETRY:
            return f"{step}: {self._attempt(node)}"
        if state in WAITING:
            return f"{state} ({step}): {self._gate_command(node, state)}"
        if state == FAILED and self.errors.get(node):
            return f"{state} ({step}): {self.errors[node]}"
        return state + (f" ({step})" if step and state != previous else "")

    def stopping(self) -> None:
        """The first Ctrl-C: say at once which steps the run still waits for."""
        self.interrupted = True
        message = "stopping (Ctrl-C again to stop now): " + self.in_flight()
        if self._live is not None:
            self._live.console.print(Text(message, style="bold yellow"))
        else:
            print(message, file=self.stream, flush=True)

    def in_flight(self) -> str:
        """What an interrupted run still waits for: the steps in flight, per node."""
        running = [f"{n} ({self.steps[n]})" for n in self.order if self.states[n] in TARGET_OF and self.steps.get(n)]
        if not running:
            return "no step in flight; the run ends now"
        return f"waiting for {len(running)} step(s) in flight to finish: {', '.join(running)}"

    # --- what each node does --------------------------------------------------------------

    def _attempt(self, node: str) -> str:
        total = f"/{self.max_attempts}" if self.max_attempts else ""
        error = f": {self.errors[node]}" if self.errors.get(node) else ""
        return f"attempt {self.attempts.get(node, 1)}{total}{error}"

    def _gate_command(self, node: str, state: str) -> str:
        gate = _GATE_OF_STATE.get(state)
        return GATES[gate]["how"].format(node=node) if gate else state

    def blocked_on(self, node: str) -> str | None:
        """``waits for <manager>: <state>`` when ``node`` cannot go on before the Management Node."""
        state = self.states[node]
        if self.roles.get(node) != "conferencing" or self.management is None:
            return None
        if state != NEW and state not in MILESTONES:
            return None
        reached = milestone_index(state)
        if reached >= len(MILESTONES):
            return None
        lacks = management_lacks(
            MILESTONES[reached], self.states.get(self.management, NEW), self.steps.get(self.management)
        )
        return f"waits for {self.management}: {lacks}" if lacks else None

    def _rank(self, node: str) -> int:
        state = self.states[node]
        if state == FAILED:
            return _FAILED
        if state in WAITING:
            return _WAITING
        if self.blocked_on(node):
            return _BLOCKED
        if state not in TARGET_OF:
            return _IDLE
        # A step retried after an error comes before the blocked rows: the Management Node retrying
        # is what its 29 blocked Conferencing Nodes wait for.
        return _RETRYING if self.attempts.get(node, 0) > 1 or self.errors.get(node) else _RUNNING

    def now(self, node: str) -> Text:
        """What ``node`` does now, one phrase."""
        state, step = self.states[node], self.steps.get(node)
        rank = self._rank(node)
        if rank == _FAILED:
            where = step or self.failed_at.get(node, "")
            return Text(f"failed at {where}" + (f": {self.errors[node]}" if self.errors.get(node) else ""), style="red")
        if rank == _WAITING:
            return Text(f"⏸ {state} ({step}): {self._gate_command(node, state)}", style="yellow")
        if rank == _BLOCKED:
            return Text(str(self.blocked_on(node)), style="dim")
        if rank in (_RUNNING, _RETRYING):
            elapsed = self.clock() - self.step_since.get(node, self.started)
            text = Text(f"{step or state} {elapsed:.0f}s")
            if self.attempts.get(node, 0) > 1 or self.errors.get(node):
                text.append(f"  {self._attempt(node)}", style="yellow")
            return text
        return Text(state, style="green" if state == MILESTONES[-1] else "")

    def _milestones(self, node: str) -> Text:
        state = self.states[node]
        reached = milestone_index(self.failed_at.get(node, NEW) if state == FAILED else state)
        text = Text()
        for i in range(1, len(MILESTONES) + 1):
            if i <= reached:
                text.append("✓", style="green")
            elif i == reached + 1 and state == FAILED:
                text.append("✗", style="red")
            elif i == reached + 1 and state not in MILESTONES and state != NEW:
                text.append("…" if state in TARGET_OF else "⏸", style="yellow")
            else:
                text.append("·", style="dim")
        return text

    # --- the frame ------------------------------------------------------------------------

    def _header(self) -> Text:
        done = Counter(self.states.values()).get(MILESTONES[-1], 0)
        elapsed = self.clock() - self.started
        text = Text(f"{done}/{len(self.order)} nodes {MILESTONES[-1]}   {elapsed:.1f}s", style="bold")
        if self.interrupted:
            text.append(f"   stopping: {self.in_flight()}", style="yellow")
        return text

    def render(self, width: int = 80, height: int = 24) -> Any:
        """The frame for a terminal of ``width`` x ``height``.

        Wide: one row per node (name, milestones, now). Narrow (the name and milestones leave
        under 40 columns): the phrase on the lines under the name. Either way the name is whole.
        When the rows do not fit, the problems come first: a failed or waiting node, or one with a
        retried error, keeps its whole phrase (the error, the gate's command), the others one line each.
        """
        if len(self.order) > _GRID_LIMIT:
            return self._counts(width)
        longest = max(len(n) for n in self.order)
        narrow = width - longest - len(MILESTONES) - 4 < 40
        phrase_width = max(width - 2 if narrow else width - longest - len(MILESTONES) - 4, 10)
        phrases = {n: self.now(n) for n in self.order}

        def lines(node: str, whole: bool) -> int:
            folded = len(phrases[node].wrap(_MEASURE, phrase_width)) if whole else 1  # as rich will fold it
            return folded + (1 if narrow else 0)

        room = max(height - _CHROME, 2)
        rows = [(n, True) for n in self.order]
        if sum(lines(n, True) for n in self.order) > room:
            budget, rows = room - 1, []  # a line for the summary of the rest
            for node in sorted(self.order, key=lambda n: (self._rank(n), self.order.index(n))):
                whole = self._rank(node) in (_FAILED, _WAITING, _RETRYING)
                if lines(node, whole) > budget:
                    whole = False
                    if lines(node, whole) > budget:
                        break
                rows.append((node, whole))
                budget -= lines(node, whole)
            rows = rows or [(self.order[0], False)]
        for node, whole in rows:
            if not whole:
                phrases[node].no_wrap, phrases[node].overflow = True, "ellipsis"
        parts: list[Any] = [self._header()]
        if narrow:
            for node, _ in rows:
                name = node.ljust(longest) if longest + len(MILESTONES) + 2 <= width else node
                parts.append(Text.assemble(Text(name, style="bold"), "  ", self._milestones(node)))
                parts.append(Padding(phrases[node], (0, 0, 0, 2)))  # a folded phrase stays indented under its name
        else:
            table = Table(show_header=True, header_style="bold", expand=False, pad_edge=False, box=None)
            table.add_column("node", no_wrap=True, min_width=longest)
            table.add_column("milestones", no_wrap=True, min_width=len(MILESTONES))
            table.add_column("now", ratio=1, overflow="fold")
            for node, _ in rows:
                table.add_row(node, self._milestones(node), phrases[node])
            parts.append(table)
        shown = {node for node, _ in rows}
        rest = [n for n in self.order if n not in shown]
        if rest:
            counts = Counter(self.states[n] for n in rest)
            summary = ", ".join(f"{c} {s}" for s, c in counts.most_common())
            parts.append(Text(f"… and {len(rest)} more: {summary}", style="dim"))
        return Group(*parts)

    def _names(self, label: str, nodes: list[str], limit: int = 8) -> Text:
        more = f" (+{len(nodes) - limit} more)" if len(nodes) > limit else ""
        return Text(f"{label}: {', '.join(nodes[:limit])}{more}", style="red" if label == "failed" else "yellow")

    def _counts(self, width: int = 80) -> Any:
        counts = Counter(self.states.values())
        columns = [NEW, *MILESTONES, "in progress", "waiting", FAILED]
        row = [
            str(counts.get(NEW, 0)),
            *(str(counts.get(m, 0)) for m in MILESTONES),
            str(sum(v for k, v in counts.items() if k in TARGET_OF)),
            str(sum(v for k, v in counts.items() if k in WAITING)),
            str(counts.get(FAILED, 0)),
        ]
        # A column per state needs its name's width plus borders; narrower, the states go on one
        # wrapping line instead of being cut to "dep…".
        if sum(max(len(c), len(n)) + 3 for c, n in zip(columns, row, strict=True)) + 1 <= width:
            table: Any = Table(show_header=True, header_style="bold")
            for c in columns:
                table.add_column(c, justify="right")
            table.add_row(*row)
        else:
            table = Text("  ·  ".join(f"{c} {n}" for c, n in zip(columns, row, strict=True)))
        total = len(self.order) * len(MILESTONES)
        progress = sum(max(milestone_index(s), 0) for s in self.states.values())
        parts: list[Any] = [self._header(), _bar(progress, total, width), table]
        failed = [n for n in self.order if self.states[n] == FAILED]
        waiting = [n for n in self.order if self.states[n] in WAITING]
        if failed:
            parts.append(self._names("failed", failed))
        if waiting:
            parts.append(self._names("waiting", [f"{n} ({_GATE_OF_STATE.get(self.states[n], '?')})" for n in waiting]))
        return Group(*parts)


def _bar(done: int, total: int, width: int) -> Text:
    """``━━━━╺────  42%`` on one line of its own (rich's ProgressBar ends no line without colours)."""
    cells = max(width - 6, 10)
    filled = cells * done // total if total else cells
    return Text.assemble(
        ("━" * filled, "green"), ("─" * (cells - filled), "dim"), f" {100 * done // max(total, 1):3d}%"
    )
