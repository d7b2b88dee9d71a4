"""The read-only status page: server-rendered, no external assets, every value escaped."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render"]

_COLUMNS = ("node", "role", "state", "step", "gate", "last_error")


def _cell(value: Any) -> str:
    return "" if value is None else escape(str(value), quote=True)


def render(journal: str, rows: list[dict[str, Any]], refresh_s: int = 10) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in (*_COLUMNS, "next"))
    body = "".join(
        f'<tr id="node-{_cell(r["node"])}">'
        + "".join(f'<td class="{c}">{_cell(r[c])}</td>' for c in _COLUMNS)
        + f'<td class="next">{_cell(r["next"]["action"])}: {_cell(r["next"]["reason"])}</td></tr>'
        for r in rows
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{int(refresh_s)}"><title>orchestrator status</title>'
        "<style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:2px 6px}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Nodes</h1><p>journal {_cell(journal)}</p><table><tr>{head}</tr>{body}</table></body></html>"
    )
