"""Progress: a live nodes x states grid on a terminal (rich), plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from machines.lifecycle import FAILED, GATES, MILESTONES, NEW, TARGET_OF, milestone_index
from journal import kinds

__all__ = ["Progress"]

_GRID_LIMIT = 40  # past this many nodes, the grid becomes a count per state


class Progress:
    """Observer of the engine's commits. Use as a context manager around the run."""

    def __init__(self, nodes: list[tuple[str, str]], states: dict[str, str], *, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live_mode = self.stream.isatty() if live is None else live
        self.roles = dict(nodes)
        self.order = [n for n, _ in nodes]
        self.states = dict(states)
        self.steps: dict[str, str | None] = {n: None for n in self.order}
        self.failed_at: dict[str, str] = {}
        self.started = time.monotonic()
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.live_mode:
            # Live re-renders from the current states at its own pace: an observer call never
            # renders (a burst of commits costs nothing) and the screen is never stale.
            self._live = Live(get_renderable=self._render, console=Console(file=self.stream), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)

    def __call__(self, node: str, state: str, step: str | None, kind: str) -> None:
        if not node:
            return
        previous = self.states.get(node)
        if state == FAILED and previous:
            self.failed_at[node] = previous
        self.states[node] = state
        self.steps[node] = step
        if self._live is None and state != previous and (state in MILESTONES or state == FAILED or kind == kinds.GATE_WAITING):
            print(f"{time.monotonic() - self.started:7.2f}s {node}: {state}" + (f" ({step})" if step and state != previous else ""), file=self.stream, flush=True)

    def _render(self) -> Any:
        counts = Counter(self.states.values())
        done = counts.get(MILESTONES[-1], 0)
        header = Text(f"{done}/{len(self.order)} nodes ldap_authenticated   {time.monotonic() - self.started:.1f}s", style="bold")
        if len(self.order) > _GRID_LIMIT:
            table = Table(show_header=True, header_style="bold")
            columns = [NEW, *MILESTONES, "in progress", "waiting", FAILED]
            for c in columns:
                table.add_column(c, justify="right")
            waiting = {g["state"] for g in GATES.values()}
            row = [
                str(counts.get(NEW, 0)),
                *(str(counts.get(m, 0)) for m in MILESTONES),
                str(sum(v for k, v in counts.items() if k in TARGET_OF)),
                str(sum(v for k, v in counts.items() if k in waiting)),
                str(counts.get(FAILED, 0)),
            ]
            table.add_row(*row)
            total = len(self.order) * len(MILESTONES)
            progress = sum(max(milestone_index(s), 0) for s in self.states.values())
            return Group(header, ProgressBar(total=total, completed=progress), table)
        table = Table(show_header=True, header_style="bold")
        table.add_column("node")
        for m in MILESTONES:
            table.add_column(m, justify="center")
        table.add_column("now")
        for node in self.order:
            state = self.states[node]
            reached = milestone_index(self.failed_at.get(node, NEW) if state == FAILED else state)
            cells = []
            for i, _m in enumerate(MILESTONES, start=1):
                if i <= reached:
                    cells.append(Text("✓", style="green"))
                elif i == reached + 1 and state == FAILED:
                    cells.append(Text("✗", style="red"))
                elif i == reached + 1 and state not in MILESTONES and state != NEW:
                    cells.append(Text("…" if state in TARGET_OF else "⏸", style="yellow"))
                else:
                    cells.append(Text("·", style="dim"))
            now = state if state in MILESTONES or state in (NEW, FAILED) else f"{state}: {self.steps.get(node) or ''}"
            table.add_row(node, *cells, now)
        return Group(header, table)
