"""The audit report as text (a table), JSON (the stable shape) or one self-contained HTML page.

Every format is rendered from ``AuditReport.as_json()``, which has the secrets scrubbed: no format
can show more than the JSON does. The HTML page has no external assets (inline CSS, no script)
and every value is escaped.
"""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["FORMATS", "render"]

FORMATS = ("text", "json", "html")
_MARK = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "not_settable": "NOT SETTABLE", "not_applicable": "N/A"}


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _text(body: dict[str, Any]) -> str:
    rows = [(r["control"], r["node"], _MARK[r["status"]], r["title"]) for r in body["results"]]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(("CONTROL", "NODE", "STATUS"))]
    lines = [
        f"Secure-mode compliance audit of {body['deployment']} at {body['generated_at']}",
        "",
        "  ".join(h.ljust(w) for h, w in zip(("CONTROL", "NODE", "STATUS"), widths, strict=True)) + "  TITLE",
    ]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    problems = [r for r in body["results"] if r["status"] in ("fail", "error", "not_settable")]
    if problems:
        lines += ["", "Details:"]
    for r in problems:
        lines.append(f"  {r['control']} on {r['node']} ({_MARK[r['status']]}): {r['reason']}")
        for key in sorted(set(r["expected"]) | set(r["observed"])):
            if r["expected"].get(key) != r["observed"].get(key):
                lines.append(
                    f"    {key}: expected {_value(r['expected'].get(key))}, observed {_value(r['observed'].get(key))}"
                )
        lines.append(f'    guide ({r["section"]}): "{r["guide"]}"')
    counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in body["summary"].items())
    verdict = "every control passes" if body["passed"] else "NOT COMPLIANT"
    lines += ["", f"{len(rows)} results: {counts}; {verdict}"]
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top;font-size:13px}
th{background:#eee}
.pass{background:#e6f4ea}.fail,.error{background:#fce8e6}.not_settable{background:#fef7e0}
.not_applicable{color:#777}
pre{margin:0;white-space:pre-wrap;font-size:12px}
"""


def _cell(value: Any) -> str:
    return f"<td><pre>{html.escape(json.dumps(value, indent=1, sort_keys=True, default=str))}</pre></td>"


def _html(body: dict[str, Any]) -> str:
    e = html.escape
    title = f"Secure-mode compliance audit of {body['deployment']}"
    counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in body["summary"].items())
    verdict = "every control passes" if body["passed"] else "NOT COMPLIANT"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>Generated {e(body['generated_at'])} for nodes {e(', '.join(body['nodes']))}.</p>",
        f'<p id="summary">{e(counts)}: <strong>{e(verdict)}</strong></p>',
        "<table><thead><tr><th>Control</th><th>Node</th><th>Status</th><th>Title</th><th>Guide</th>"
        "<th>Expected</th><th>Observed</th><th>Evidence</th><th>Reason</th><th>Observed at</th></tr></thead><tbody>",
    ]
    for r in body["results"]:
        status = r["status"]
        out.append(
            f'<tr class="{e(status)}"><td>{e(r["control"])}</td><td>{e(r["node"])}</td>'
            f"<td>{e(_MARK[status])}</td><td>{e(r['title'])}</td>"
            f"<td><em>{e(r['section'])}</em>: &ldquo;{e(r['guide'])}&rdquo;</td>"
            + _cell(r["expected"])
            + _cell(r["observed"])
            + _cell(r["evidence"])
            + f"<td>{e(r['reason'])}</td><td>{e(r['at'])}</td></tr>"
        )
    out += ["</tbody></table>", "</body></html>"]
    return "\n".join(out) + "\n"


def render(body: dict[str, Any], fmt: str) -> str:
    """``body`` (``AuditReport.as_json()``) in ``fmt``: text, json or html."""
    if fmt == "json":
        return json.dumps(body, indent=2, sort_keys=True, default=str) + "\n"
    if fmt == "html":
        return _html(body)
    return _text(body)
