"""history.html: the dashboard over the stored benchmark history, as asv publishes one -- per
benchmark its medians with their 95% interval bands, the change points marked with the commits
on either side, the commit and date of each run on hover, and a table of the latest verdicts
(the last run against the one before it, by the decision rule of ``compare``)."""

from __future__ import annotations

from html import escape
from pathlib import Path

from bench.measure.rule import Rule, decide
from bench.regress.compare import Judged, exit_code, finals, headline
from bench.regress.history import History, steps
from bench.render import page, svg
from bench.render.page import cell


def latest(history: History, name: str) -> list[str]:
    """The table row of one benchmark: its last run against the run before that holds it."""
    runs = [r for r in history.runs if name in r.benchmarks]
    last = runs[-1].benchmarks[name]
    if len(runs) < 2:
        return [cell(name), cell(last.median * 1e3, "{:.4f}"), cell(None), cell(None), cell("only one run"),
                cell(runs[-1].commit)]
    before = runs[-2].benchmarks[name]
    c = decide(list(before.data), list(last.data), name=name)
    return [cell(name), cell(last.median * 1e3, "{:.4f}"), cell(before.median * 1e3, "{:.4f}"),
            cell(c.ratio, "{:.3f}"), cell(str(c.verdict)), cell(f"{runs[-2].commit} -> {runs[-1].commit}")]


def _chart(history: History, name: str) -> str:
    points = []
    for i, median, low, high in history.series(name):
        run = history.runs[i]
        points.append((median * 1e3, low * 1e3, high * 1e3,
                       f"run {i + 1}: {median * 1e3:.4f} ms (95% CI {low * 1e3:.4f}-{high * 1e3:.4f}), "
                       f"commit {run.commit}, {run.when:%Y-%m-%d %H:%M} on {run.machine}"))
    index = {i: k for k, (i, *_) in enumerate(history.series(name))}
    marks = []
    for s in steps(history, name):
        k = index[s.index]
        before = history.runs[history.series(name)[k - 1][0]].commit if k else "?"
        marks.append((k, f"change point {s.change:+.1%} between commit {before} and "
                         f"{history.runs[s.index].commit}"))
    return svg.bands(points, f"{name}: median per run with its 95% interval", marks)


def render(history: History, names: list[str]) -> str:
    first, last = history.runs[0].when, history.runs[-1].when
    body = ["<h1>vaebench: benchmark history</h1>",
            f'<p class="meta">{len(history.runs)} runs, {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}; '
            f"{len(names)} benchmarks. Change points: ruptures' PELT on the log medians (dashed red, "
            "the commits on hover).</p>", "<h2>Latest verdicts</h2>",
            page.table(["benchmark", "last ms", "before ms", "ratio", "verdict", "commits"],
                       [latest(history, n) for n in names],
                       "the last run against the one before it: Mann-Whitney U and the ratio's interval")]
    for name in names:
        rows = [[cell(i + 1), cell(history.runs[i].commit), cell(f"{history.runs[i].when:%Y-%m-%d %H:%M}"),
                 cell(m * 1e3, "{:.4f}"), cell(lo * 1e3, "{:.4f}"), cell(hi * 1e3, "{:.4f}")]
                for i, m, lo, hi in history.series(name)]
        body += [f"<h2>{escape(name)}</h2>", _chart(history, name),
                 page.table(["run", "commit", "when", "median ms", "CI low", "CI high"], rows)]
    return page.document("vaebench: benchmark history", body)


def write_html(history: History, names: list[str], out: Path) -> list[Path]:
    path = out / "history.html"
    path.write_text(render(history, names))
    return [path]


def regress_page(judged: Judged, rule: Rule) -> str:
    """report.html of a ``regress`` run: the exit code and headline, the verdict per benchmark from
    both signals, each timing's ratio with its interval as a forest plot, and the counts."""
    found = finals(judged)
    timed = [f for f in found if f.timed]
    forest = [svg.Interval(f.name, f.ratio, f.ci[0], f.ci[1], str(f.verdict)) for f in timed]
    rows = [[cell(f.name), cell(str(f.verdict) if f.timed else None),
             cell(str(f.instructions.verdict) if f.instructions else None), cell(str(f.final)),
             cell(f.how or "by timing"), cell(f.ratio if f.timed else None, "{:.3f}"),
             cell(f.p_slower if f.timed else None, "{:.3g}"),
             cell(f.instructions.ratio if f.instructions else None, "{:.5f}")] for f in found]
    body = ["<h1>vaebench regress</h1>",
            f'<p class="headline" id="headline">exit {exit_code(judged)}: '
            f"{escape(headline(judged, rule))}</p>",
            "<h2>Verdicts</h2>",
            svg.forest(forest, "candidate / base time with 95% intervals") if forest else "",
            page.table(["benchmark", "timing", "instructions", "verdict", "how", "time ratio",
                        "p slower (Holm)", "instruction ratio"], rows,
                       "slower by timing or by instruction count is a regression (regress.md: the rule)")]
    return page.document("vaebench regress", body)
