"""A dry run's plan as text, in the manner of ``terraform plan``: markers, values as TOML, gates, a summary.

One line per step that does something (the steps already right are counted, not listed), each
change under it as ``+ field = value`` (created) or ``~ field = now -> wanted`` (updated in place),
values written as TOML values (strings quoted, ``true``/``false``, arrays, inline tables): never
Python reprs. A step that cannot be observed before an earlier one runs says ``(known after STEP)``
and lists the values it will set. Statuses this module does not know (``drift``, added by other
checks) are shown as they come, with their reason and changes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import tomli_w

if TYPE_CHECKING:
    from orchestrator._plan import Plan

__all__ = ["plan_lines", "summary_line", "toml_value"]

_MARKERS = {"unknown": "?", "error": "!", "blocked": "-", "ok": "="}
_LEGEND = "Symbols: + create, ~ update in place, ? known after an earlier step, ! error, - blocked"
_ONE_LINE = 110
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def toml_value(value: Any) -> str:
    """``value`` as a TOML value on one line (``null`` for none, which TOML itself does not have)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        items = ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if not isinstance(value, (str, int, float, bool)):
        value = str(value)
    return tomli_w.dumps({"v": value}).removeprefix("v = ").rstrip("\n")


def _key(key: Any) -> str:
    text = str(key)
    return text if _BARE_KEY.match(text) else toml_value(text)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def summary_line(plan: Plan) -> str:
    """``Plan: 3 nodes, 12 steps to change, 30 unknown until earlier steps run, 2 gates to open`` (+ problems)."""
    s = plan.summary()
    parts = [
        _plural(s["nodes"], "node"),
        _plural(s["change"], "step") + " to change",
        f"{s['unknown']} unknown until earlier steps run",
        _plural(s["gates"], "gate") + " to open",
    ]
    parts += [f"{s['error']} error{'s' if s['error'] != 1 else ''}"] if s["error"] else []
    parts += [f"{s['blocked']} blocked"] if s["blocked"] else []
    parts += [f"{s['other']} other"] if s["other"] else []
    return "Plan: " + ", ".join(parts) + "."


def _row_lines(row: dict[str, Any], width: int) -> list[str]:
    status = row["status"]
    changes = row.get("changes") or []
    if status == "change":
        marker = "+" if all(c.get("action", "update") == "create" for c in changes) else "~"
    else:
        marker = _MARKERS.get(status, "*")
    head = f"  {marker} {row['step']:<{width}} [{row['milestone']}]"
    if status == "unknown":
        head += f"  (known after {row['known_after']})" if row.get("known_after") else "  (known after earlier steps)"
    elif status != "change" and status not in _MARKERS:
        head += f"  {status}"  # a status added by another check (drift): named as it comes
    if row.get("reason"):
        head += f": {row['reason']}"
    if row.get("refresh"):  # a completed step that drifted (refresh): what `run` will do about it
        head += "  (run re-applies it)" if row.get("reversible") else "  (run fails the node with the repair command)"
    if row.get("gate"):
        head += f"  stops at gate {row['gate']}"
    lines = [head]
    for c in changes:
        if c.get("action") == "create" or c.get("now") is None:
            lines += _assignment(f"      + {c['field']} = ", c["wanted"])
        else:
            lines += _assignment(f"      ~ {c['field']} = {toml_value(c['now'])} -> ", c["wanted"])
    for field, value in (row.get("will_set") or {}).items():
        lines += _assignment(f"        {field} = ", value)
    for field in row.get("not_settable") or ():
        lines.append(f"        {field}: not settable on this version (absent or read-only in its /schema/), not sent")
    return lines


def _assignment(prefix: str, value: Any) -> list[str]:
    """``prefix`` and the value on one line; a table too long for one line gets a line per key."""
    one = prefix + toml_value(value)
    if len(one) <= _ONE_LINE or not isinstance(value, dict) or not value:
        return [one]
    indent = " " * (len(prefix) - len(prefix.lstrip()) + 4)
    return [prefix + "{", *(f"{indent}{_key(k)} = {toml_value(v)}" for k, v in value.items()), indent[:-2] + "}"]


def plan_lines(plan: Plan) -> list[str]:
    """The whole plan as text: the legend, every node, the gates, the summary line."""
    lines = [_LEGEND, ""]
    for node, rows in plan.nodes.items():
        lines.append(f"{node}:")
        shown = [r for r in rows if r["status"] != "ok" or r.get("not_settable")]  # a setting it cannot take: shown
        width = max((len(r["step"]) for r in shown), default=0)
        for row in shown:
            lines += _row_lines(row, width)
        right = len(rows) - len(shown)
        if not rows:
            lines.append("  nothing to do")
        elif right:
            lines.append(f"  = {_plural(right, 'step')} already right")
        lines.append("")
    if plan.gates:
        lines.append("Gates the run will stop at (open each, then `orchestrator resume NODE`):")
        for g in plan.gates:
            before = f" (before {g['step']})" if g["step"] != g["gate"] else ""
            lines.append(f"  {g['node']}: {g['gate']}{before}: {g['how']}")
        lines.append("")
    lines.append(summary_line(plan))
    return lines
