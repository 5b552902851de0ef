"""The shell of a self-contained HTML page (report.html, the history dashboard): its styles and
its one script (sortable tables) inline, no request to any host, readable from ``file://``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:12px 24px 48px;color:#222}
h1{font-size:22px;margin:12px 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;
padding-bottom:3px}h3{font-size:14px;margin:16px 0 6px}
.meta{color:#555;font-size:13px}.headline{font-size:15px;background:#f5f8fc;border-left:4px solid #4c78a8;
padding:8px 12px}.note{color:#555;font-size:12.5px}code{background:#f2f2f2;padding:0 3px;border-radius:3px}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px}th,td{border:1px solid #ddd;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f3f3f3}table.sortable th{cursor:pointer;user-select:none}
table.sortable th:after{content:" \\2195";color:#999}
td.num{text-align:right;font-variant-numeric:tabular-nums}
svg.chart{display:block;margin:6px 0;max-width:100%;height:auto}svg text{fill:#333;font-family:inherit}
.faster{color:#2e7d32;font-weight:600}.slower{color:#c62828;font-weight:600}.noisy{color:#757575}
"""

SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute('data-order') !== 'asc';
      table.querySelectorAll('th').forEach(function(h){ h.removeAttribute('data-order'); });
      th.setAttribute('data-order', asc ? 'asc' : 'desc');
      function key(row){
        var cell = row.cells[col], v = cell.getAttribute('data-sort');
        if (v !== null && v !== '' && !isNaN(parseFloat(v))) return parseFloat(v);
        return cell.textContent.trim().toLowerCase();
      }
      rows.sort(function(a, b){
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def inline(markdown: str) -> str:
    """One line of the reports' Markdown (`code`, **bold**) as HTML, everything else escaped."""
    text = escape(markdown)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def plain(markdown: str) -> str:
    """The words a reader sees of one line of Markdown (the marks removed)."""
    return markdown.replace("**", "").replace("`", "")


Cell = str | float | int | None


def cell(value: Cell, fmt: str | None = None) -> str:
    """A table cell: numbers right-aligned with their exact value to sort by (an int with
    thousands separators, a float with two decimals unless ``fmt`` says), text escaped."""
    if value is None or (isinstance(value, float) and value != value):
        return '<td data-sort="">-</td>'
    if isinstance(value, int | float) and not isinstance(value, bool):
        shown = (fmt or ("{:,}" if isinstance(value, int) else "{:,.2f}")).format(value)
        return f'<td class="num" data-sort="{value!r}">{escape(shown)}</td>'
    css = f' class="{value}"' if value in ("faster", "slower", "noisy") else ""
    return f"<td{css}>{inline(str(value))}</td>"


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    """A sortable table; ``rows`` hold cells made by :func:`cell`."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    cap = f"<caption class=\"note\">{escape(caption)}</caption>" if caption else ""
    return f'<table class="sortable">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def document(title: str, body: Sequence[str]) -> str:
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(body) + f"<script>{SCRIPT}</script></body></html>\n")
