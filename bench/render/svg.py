"""Charts drawn as inline SVG, for report.html: no library, no request to any host.

Each chart is a function of plain numbers returning one ``<svg>`` element; every mark carries a
``<title>`` (the browser shows it on hover) with its exact figures, and the page puts the same
numbers in a table below the chart for a reader without a mouse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d",
          "#bab0ac", "#eeca3b")
VERDICT_COLORS = {"faster": "#2e7d32", "slower": "#c62828", "unchanged": "#616161", "noisy": "#9e9e9e",
                  "": "#1565c0"}


@dataclass(frozen=True)
class Interval:
    """One row of a forest plot: a ratio, its 95% interval (NaN: none), the verdict."""

    label: str
    value: float
    low: float
    high: float
    verdict: str = ""


def _svg(width: int, height: int, body: Sequence[str], label: str) -> str:
    return (f'<svg class="chart" role="img" aria-label="{escape(label)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">' + "".join(body) + "</svg>")


def _text(x: float, y: float, s: str, anchor: str = "start", size: int = 12, cls: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"'
            + (f' class="{cls}"' if cls else "") + f">{escape(s)}</text>")


def _finite(*xs: float) -> bool:
    return all(isinstance(x, int | float) and math.isfinite(x) for x in xs)


def forest(rows: Sequence[Interval], label: str, reference: float = 1.0, unit: str = "x") -> str:
    """Each ratio as a point with its interval as a bar, against a line at ``reference``; a log
    axis, so 0.5x and 2x lie as far from 1 as each other."""
    width, left, right, row_h, top = 760, 190, 150, 26, 24
    height = top + row_h * len(rows) + 34
    values = [v for r in rows for v in (r.value, r.low, r.high) if _finite(v) and v > 0] + [reference]
    lo, hi = math.log(min(values) / 1.05), math.log(max(values) * 1.05)
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return left + (math.log(v) - lo) / span * (width - left - right)

    body = [f'<line x1="{x(reference):.1f}" y1="{top - 8}" x2="{x(reference):.1f}" '
            f'y2="{height - 28}" stroke="#333" stroke-dasharray="4 3"/>',
            _text(x(reference), height - 12, f"{reference:g}{unit}", "middle", 11)]
    for k, r in enumerate(rows):
        y = top + row_h * k + row_h / 2
        color = VERDICT_COLORS.get(r.verdict, "#1565c0")
        tip = f"{r.label}: {r.value:.3f}" + (f" (95% CI {r.low:.3f}-{r.high:.3f})" if _finite(r.low, r.high)
                                             else " (no interval)") + (f", {r.verdict}" if r.verdict else "")
        mark = [f"<title>{escape(tip)}</title>"]
        if _finite(r.low, r.high) and r.low > 0:
            mark.append(f'<line x1="{x(r.low):.1f}" y1="{y:.1f}" x2="{x(r.high):.1f}" y2="{y:.1f}" '
                        f'stroke="{color}" stroke-width="3"/>')
        if _finite(r.value) and r.value > 0:
            mark.append(f'<circle cx="{x(r.value):.1f}" cy="{y:.1f}" r="5" fill="{color}"/>')
        body.append('<g class="mark">' + "".join(mark) + "</g>")
        body.append(_text(left - 8, y + 4, r.label, "end"))
        body.append(_text(width - right + 8, y + 4, f"{r.value:.2f}{unit} {r.verdict}".rstrip(), size=11))
    return _svg(width, height, body, label)


def stacked(bars: Sequence[tuple[str, dict[str, float]]], label: str, unit: str = "ms") -> str:
    """One horizontal bar per name, split into its parts (a legend above)."""
    parts = list(dict.fromkeys(p for _, values in bars for p in values))
    color = {p: COLORS[i % len(COLORS)] for i, p in enumerate(parts)}
    width, left, right, row_h, top = 760, 190, 90, 24, 34
    height = top + row_h * len(bars) + 10
    most = max((sum(v.values()) for _, v in bars), default=0.0) or 1.0
    scale = (width - left - right) / most
    body, lx = [], float(left)
    for p in parts:
        body += [f'<rect x="{lx:.1f}" y="8" width="12" height="12" fill="{color[p]}"/>',
                 _text(lx + 16, 18, p, size=11)]
        lx += 24 + 7 * len(p)
    for k, (name, values) in enumerate(bars):
        y, bx = top + row_h * k, float(left)
        body.append(_text(left - 8, y + 15, name, "end"))
        for p, v in values.items():
            w = max(v * scale, 0.0)
            body.append(f'<rect class="mark" x="{bx:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                        f'fill="{color[p]}"><title>{escape(f"{name}: {p} {v:.3f} {unit}")}</title></rect>')
            bx += w
        body.append(_text(bx + 6, y + 15, f"{sum(values.values()):.2f} {unit}", size=11))
    return _svg(width, height, body, label)


def timeline(series: dict[str, list[float]], label: str, spans: Sequence[tuple[float, float, str]] = (),
             unit: str = "ms", axis: str = "sample (step or round) in order",
             colors: dict[str, str] | None = None) -> str:
    """Every sample in order, one line per series; ``spans`` (start, end, what) shade the stretches
    that were warm-up or under a profiler, by sample index."""
    width, height, left, bottom, top = 760, 240, 56, 28, 16
    n = max((len(v) for v in series.values()), default=0)
    n = max(n, *(int(e) for _, e, _ in spans)) if spans else n
    values = sorted(v for vs in series.values() for v in vs if _finite(v))
    # The axis ends a little above the 98th percentile: one stalled step must not flatten the
    # rest into a line; a sample above it is drawn at the top edge (its value on hover).
    vmax = (min(values[-1], 1.5 * values[int(0.98 * (len(values) - 1))]) if values else 1.0) * 1.08 or 1.0

    def x(i: float) -> float:
        return left + i / max(n - 1, 1) * (width - left - 12)

    def y(v: float) -> float:
        return top + (1 - min(v, vmax) / vmax) * (height - top - bottom)

    body = []
    for start, end, what in spans:
        fill = (colors or {}).get(what, "#fff3cd")
        body.append(f'<rect x="{x(start):.1f}" y="{top}" width="{max(x(end) - x(start), 1):.1f}" '
                    f'height="{height - top - bottom}" fill="{fill}" opacity="0.8">'
                    f"<title>{escape(what)}</title></rect>")
    for tick in (0.0, vmax / 2, vmax):
        body += [f'<line x1="{left}" x2="{width - 12}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eee"/>',
                 _text(left - 6, y(tick) + 4, f"{tick:.2f}", "end", 10)]
    body.append(_text(left, height - 8, f"{axis}; {unit}", size=10))
    for k, (name, vs) in enumerate(series.items()):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vs) if _finite(v))
        body.append(f'<polyline class="mark" fill="none" stroke="{COLORS[k % len(COLORS)]}" '
                    f'stroke-width="1.2" points="{points}"><title>{escape(name)}</title></polyline>')
    return _svg(width, height, body, label)


def bands(points: Sequence[tuple[float, float, float, str]], label: str,
          marks: Sequence[tuple[float, str]] = (), unit: str = "ms") -> str:
    """A series of medians with their intervals as a band: (value, low, high, hover text) per run;
    ``marks`` (run index, text) draw a dashed line where a change point starts."""
    width, height, left, bottom, top = 760, 200, 64, 26, 12
    values = [v for p in points for v in p[:3] if _finite(v)]
    vmin, vmax = min(values, default=0.0) * 0.95, max(values, default=1.0) * 1.05 or 1.0
    n = len(points)

    def x(i: float) -> float:
        return left + (i / max(n - 1, 1)) * (width - left - 16)

    def y(v: float) -> float:
        return top + (1 - (v - vmin) / ((vmax - vmin) or 1.0)) * (height - top - bottom)

    upper = [f"{x(i):.1f},{y(p[2]):.1f}" for i, p in enumerate(points)]
    lower = [f"{x(i):.1f},{y(p[1]):.1f}" for i, p in reversed(list(enumerate(points)))]
    line = " ".join(f"{x(i):.1f},{y(p[0]):.1f}" for i, p in enumerate(points))
    body = [f'<polygon points="{" ".join(upper + lower)}" fill="#c6dbef" opacity="0.7"/>',
            f'<polyline fill="none" stroke="#08519c" points="{line}"/>']
    for i, p in enumerate(points):
        body.append(f'<circle class="mark" cx="{x(i):.1f}" cy="{y(p[0]):.1f}" r="3.5" fill="#08519c">'
                    f"<title>{escape(p[3])}</title></circle>")
    for i, what in marks:
        body.append(f'<line x1="{x(i - 0.5):.1f}" x2="{x(i - 0.5):.1f}" y1="{top}" y2="{height - bottom}" '
                    f'stroke="#c62828" stroke-dasharray="5 3"><title>{escape(what)}</title></line>')
    for tick in (vmin, (vmin + vmax) / 2, vmax):
        body.append(_text(left - 6, y(tick) + 4, f"{tick:.3g}", "end", 10))
    body.append(_text(left, height - 6, f"run (oldest first); {unit}", size=10))
    return _svg(width, height, body, label)
