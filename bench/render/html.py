"""report.html: one self-contained page of a run, rendered from the Result, sections by its kind.

What it shows: the headline (the same sentences as summary.md), the machine; a forest plot of the
ratios with their 95% intervals against 1.0; where the step goes (stacked parts, ms on hover);
every measured step in order with the warm-up and profiler windows marked; throughput, memory
and MFU; the top functions (cProfile) and top operators (Kineto) with the command that opens
each file. Every chart's numbers are also in a sortable table below it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path

from bench.defaults import UNHOOKED
from bench.measure import derive
from bench.measure.result import Measurement, Result
from bench.measure.stats import Ratio
from bench.render import memory, page, script, statements, svg, tries
from bench.render.page import cell, inline, table

Section = Callable[[Result, Path], list[str]]


def _header(result: Result, root: Path) -> list[str]:
    env = result.machine
    took = f", measuring took {result.duration_s:.0f} s" if result.duration_s else ""
    return [f"<h1>vaebench: {inline(result.spec.title())}</h1>",
            f'<p class="meta">Started {escape(result.created)}{took} on {escape(env.describe())}, '
            f"Python {escape(env.python)}.</p>"]


def _headline(text: str, notes: list[str]) -> list[str]:
    return [f'<p class="headline" id="headline">{inline(text)}</p>',
            *[f'<p class="note">{inline(line)}</p>' for line in notes]]


def _variants_headline(result: Result, root: Path) -> list[str]:
    return _headline(statements.headline(result), statements.noise(result))


def _script_headline(result: Result, root: Path) -> list[str]:
    said = script.headline(result)
    return _headline(said, []) if said else []  # nothing measured: no empty box


def _ratio_cells(ratio: Ratio | None) -> list[str]:
    if ratio is None or not ratio.measurable:
        return [cell(None), cell(None), cell(ratio.caveat if ratio is not None else None)]
    return [cell(ratio.value, "{:.3f}"), cell(ratio.low, "{:.3f}"), cell(ratio.high, "{:.3f}")]


def _variants(result: Result, root: Path) -> list[str]:
    rows = derive.rows(result)
    if not rows:
        return []
    forest = [svg.Interval(r.variant, r.speedup.value, r.speedup.low, r.speedup.high, r.verdict)
              for r in rows[1:] if r.speedup.measurable]
    body = [[cell(r.variant), cell(r.median_ms), *_ratio_cells(r.speedup), cell(r.verdict or "baseline"),
             cell(_rate(result, r.variant), "{:,.0f}"), cell(derive.peak_mb(result, r.variant), "{:,.1f}"),
             cell(derive.mfu(result, r.variant), "{:.1%}")] for r in rows]
    return ["<h2>Variants</h2>",
            svg.forest(forest, f"speedup over {rows[0].variant} with 95% intervals") if forest else "",
            '<p class="note">Speedup over the baseline (above 1: faster), 95% bootstrap interval over '
            "paired interleaved rounds; the dashed line is no difference.</p>",
            table(["variant", "step ms", "speedup", "CI low", "CI high", "verdict", "samples/s",
                   "peak MB", "MFU"], body)]


def _rate(result: Result, name: str) -> float | None:
    rate = derive.throughput(result, name)
    return rate.value if rate is not None else None


def _changes(result: Result, root: Path) -> list[str]:
    found = derive.changes(result)
    if not found:
        return []
    rows = [[cell(c.variant), cell(c.reference), cell(c.speedup.value, "{:.3f}"),
             cell(c.speedup.ci()), cell(c.verdict),
             cell(c.added_s.value * 1e3 if c.added_s else None, "{:+.3f}"),
             cell(round(c.one_off_s, 2) + 0.0, "{:.2f}")]
            for c in found]
    return ["<h2>What each change buys</h2>",
            table(["variant", "changes", "speedup", "interval", "verdict", "ms per step vs it", "one-off s"],
                  rows, "each variant against the one it changes one thing of")]


def _per_step_ms(result: Result, m: Measurement) -> dict[str, float]:
    step = derive.step_seconds(result, m.name) * 1e3
    return {p: s * step for p, s in derive.shares(result, m.name).items()}


def _parts(result: Result, root: Path) -> list[str]:
    bars = [(n, _per_step_ms(result, result[n])) for n in result.measured]
    bars = [(n, parts) for n, parts in bars if parts]
    if not bars:
        return []
    names = list(dict.fromkeys(p for _, parts in bars for p in parts))
    rows = [[cell(n), *[cell(parts.get(p), "{:.3f}") for p in names]] for n, parts in bars]
    return ["<h2>Where the step goes</h2>", svg.stacked(bars, "ms per step in each part"),
            table(["name", *[f"{p} ms" for p in names]], rows, "median step split by the parts' shares")]


def _sequence(m: Measurement, samples: bool = True) -> tuple[list[float], list[tuple[float, float, str]]]:
    """A measurement's samples in the order they ran (ms per step; ``samples=False``: left out),
    then each profiler's windows, alternated as they ran; the spans mark the warm-up and the
    profiled windows."""
    values = [t.per_step * 1e3 for t in m.samples] if samples else []
    spans: list[tuple[float, float, str]] = []
    warmup = m.process.warmup if m.process and samples else 0
    if warmup:
        spans.append((0, warmup, f"warm-up: {warmup} steps, left out (not timed)"))
        values = [float("nan")] * warmup + values
    for tool, tt in m.profiles.items():
        for i in range(min(len(tt.plain), len(tt.tool))):
            for which, t in (("plain", tt.plain[i]), (tool, tt.tool[i]))[:: 1 if i % 2 == 0 else -1]:
                start = len(values)
                values += [s * 1e3 for s in t.steps]
                if which != "plain":
                    spans.append((start, len(values) - 1, f"{tool} window {i + 1}"))
    return values, spans


def _numbers(series: dict[str, list[float]], spans: Sequence[tuple[float, float, str]] = ()) -> str:
    """A chart's every sample as a table, folded away (for a reader without a mouse)."""
    marked = {int(k): what for start, end, what in spans for k in range(int(start), int(end) + 1)}
    rows = [[cell(name), cell(k + 1), cell(v, "{:.3f}"), cell(marked.get(k))]
            for name, values in series.items() for k, v in enumerate(values) if v == v]
    return f"<details><summary>the numbers ({len(rows)} samples)</summary>" + table(
        ["series", "sample", "ms", "marked"], rows) + "</details>"


TIMELINE_NOTE = ('<p class="note">Shaded: the warm-up (left out) and the windows under a profiler; the '
                 "step times everywhere else in this report come from unprofiled steps.</p>")


def _variants_timeline(result: Result, root: Path) -> list[str]:
    """The interleaved rounds of every variant in order, then each profiled variant's windows."""
    series = {n: [t.per_step * 1e3 for t in result[n].samples] for n in result.measured}
    if not series:
        return []
    out = ["<h2>Every measured round</h2>", svg.timeline(series, "each round's step time, in order"),
           _numbers(series)]
    for m in result.measurements:
        if m.profiles:
            values, spans = _sequence(m, samples=False)
            out += [f"<h3>{escape(m.name)}: profiler windows (shaded), alternated with plain ones</h3>",
                    svg.timeline({m.name: values}, f"{m.name} profiler windows", spans),
                    _numbers({m.name: values}, spans)]
    return [*out, TIMELINE_NOTE]


def _script_timeline(result: Result, root: Path) -> list[str]:
    """Each process's steps in order: warm-up, the measured window, the profiler windows."""
    if not result.measured:
        return []
    out = ["<h2>Every measured step</h2>"]
    for n in result.measured:
        values, spans = _sequence(result[n])
        out += [f"<h3>{escape(n)}</h3>", svg.timeline({n: values}, f"{n} steps", spans),
                _numbers({n: values}, spans)]
    return [*out, TIMELINE_NOTE]


def _overheads(result: Result, root: Path) -> list[str]:
    rows, forest = [], []
    for m in result.measurements:
        for tool in m.profiles:
            if tool == UNHOOKED:
                o, tool = derive.observing(result, m.name), "observing (part hooks on / off)"
            else:
                o = derive.overhead(result, m.name, tool)
            rows.append([cell(m.name), cell(tool), *_ratio_cells(o), cell(statements.overhead_text(o))])
            if o.measurable:
                forest.append(svg.Interval(f"{m.name} {tool}", o.value, o.low, o.high, str(o.verdict)))
    if not rows:
        return []
    return ["<h2>Profiler overhead</h2>",
            svg.forest(forest, "step time under the profiler / without") if forest else "",
            table(["name", "profiler", "ratio", "CI low", "CI high", "said"], rows)]


def _ranks(result: Result, root: Path) -> list[str]:
    """One row per rank (step, own work, all-reduce), their skews as a forest, the straggler."""
    found = script.rank_rows(result)
    if len(found) < 2:
        return []
    nodes = any(r.node for r in found)  # several nodes: each rank's host, node and local rank
    rows = [[cell(r.name), *([cell(r.node)] if nodes else []), cell(r.step_s * 1e3), cell(r.own_s * 1e3),
             cell(r.reduce_ms), cell(r.skew.text() if r.skew else "(the median rank)")] for r in found]
    forest = [svg.Interval(r.name, r.skew.value, r.skew.low, r.skew.high, str(r.skew.verdict))
              for r in found if r.skew is not None and r.skew.measurable]
    said = [*script.straggler(result), *script.clocks(result)]
    return ["<h2>Ranks</h2>", *[f"<p>{inline(line)}</p>" for line in said],
            svg.forest(forest, "own work against the median rank's") if forest else "",
            table(["rank", *(["node"] if nodes else []), "step ms", "own work ms", "all-reduce ms",
                   "skew vs median rank (95% CI)"], rows)]


def _built(result: Result, root: Path) -> list[str]:
    """What the script built, where, with its options (from the first process that saw any)."""
    built = next((m.process.built for m in result.measurements if m.process and m.process.built), [])
    if not built:
        return []
    rows = [[cell(b.kind), cell(b.type), cell(b.where or None),
             cell(", ".join(f"{k}={v}" for k, v in b.options.items()) or None)] for b in built]
    return ["<h2>What the script built</h2>", table(["kind", "type", "where", "options"], rows)]


def _footprint(result: Result, root: Path) -> list[str]:
    """Per process: samples/s with its interval, peak memory (host and GPU), FLOPs and MFU."""
    rows = []
    for n in result.measured:
        m, rate = result[n], derive.throughput(result, n)
        value, low, high = (rate.value, rate.low, rate.high) if rate else (None, None, None)
        rows.append([cell(n), *[cell(v, "{:,.0f}") for v in (value, low, high)],
                     cell(m.footprint.max_rss_mb, "{:,.0f}"), cell(m.footprint.cuda_peak_mb, "{:,.0f}"),
                     cell(derive.gflop_per_step(result, n), "{:.3f}"), cell(derive.mfu(result, n), "{:.1%}")])
    if not rows:
        return []
    return ["<h2>Throughput and memory</h2>",
            table(["process", "samples/s", "CI low", "CI high", "max RSS MB", "GPU peak MB", "GFLOP/step",
                   "MFU"], rows, "samples per step (the batch's first dimension) / the median step")]


def _artifact(root: Path, m: Measurement, suffix: str) -> Path | None:
    """A profiler file of ``m`` that exists (the run may have ended before its window)."""
    return next((root / p for p in m.artifacts if p.endswith(suffix) and (root / p).is_file()), None)


def _per_file(result: Result, root: Path, suffix: str, title: str,
              show: Callable[[Measurement, Path], list[str]]) -> list[str]:
    """One block per measurement that has a profiler file ending in ``suffix`` (and it exists)."""
    out = []
    for m in result.measurements:
        found = _artifact(root, m, suffix)
        if found is None:
            continue
        try:
            out += show(m, found)
        except Exception as exc:  # a damaged profiler file must not cost the page
            out.append(f'<p class="note">{escape(found.name)} could not be read: '
                       f"{escape(type(exc).__name__)}: {escape(str(exc)[:200])}</p>")
    return [f"<h2>{title}</h2>", *out] if out else []


def _function_table(m: Measurement, prof: Path) -> list[str]:
    from bench.profile.readers import top_functions

    rows = [[cell(f.name), cell(f.where), cell(f.calls), cell(f.own_ms), cell(f.cumulative_ms)]
            for f in top_functions(prof)]
    return [f"<h3>{escape(m.name)}: top functions by cumulative time (cProfile)</h3>",
            f'<p class="note">Open the whole profile: <code>snakeviz {escape(prof.name)}</code></p>',
            table(["function", "file:line", "calls", "own ms", "cumulative ms"], rows)]


def _operator_table(m: Measurement, trace: Path) -> list[str]:
    from bench.profile.readers import top_operators

    rows = [[cell(o.name), cell(o.device), cell(o.calls), cell(o.self_ms, "{:.3f}")]
            for o in top_operators(trace)]
    return [f"<h3>{escape(m.name)}: top operators by self time (Kineto)</h3>",
            '<p class="note">Open the trace: <code>tensorboard --logdir tb</code> (PyTorch Profiler tab) or '
            f"drag <code>{escape(trace.name)}</code> (under <code>tb/</code>) into ui.perfetto.dev</p>",
            table(["operator", "device", "calls", "self ms"], rows)]


def _functions(result: Result, root: Path) -> list[str]:
    return _per_file(result, root, ".prof", "Top functions", _function_table)


def _operators(result: Result, root: Path) -> list[str]:
    return _per_file(result, root, ".pt.trace.json", "Top operators", _operator_table)


def _not_measured(result: Result, root: Path) -> list[str]:
    items = [f"<li>{inline(f'`{m.name}` ({m.status}): {m.reason}')}</li>" for m in result.measurements
             if m.status != "ok" and m.bound_of is None]
    items += [f"<li>{inline(f'`{k}` (partial): {why}')}</li>" for k, why in result.partial.items()]
    return ["<h2>Not measured</h2>", "<ul>", *items, "</ul>"] if items else []


# The sections of report.html by the Result's kind, in order: a new kind adds its list here.
SECTIONS: dict[str, list[Section]] = {
    "variants": [_header, _variants_headline, _variants, _changes, _parts, memory.html, _variants_timeline,
                 _overheads, _functions, _operators, _not_measured],
    "script": [_header, _script_headline, memory.oom_html, _ranks, _built, _footprint, _parts, memory.html,
               _script_timeline, _overheads, _functions, _operators, _not_measured],
    "try": [_header, tries.html, _not_measured],
    "fit": [_header, memory.fit_html, memory.html, _not_measured],
}


def render(result: Result, root: Path) -> str:
    """The page; ``root`` is where the run's profiler files are (read for the top tables)."""
    body = [line for section in SECTIONS[result.kind] for line in section(result, root)]
    return page.document(f"vaebench: {page.plain(result.spec.title())}", body)


def write(result: Result, out: Path, final: Path | None = None) -> list[Path]:
    """``out/report.html``; the profiler files are read from ``out`` (a run's staging folder) or,
    where they are not there (a re-render), from ``final``."""
    staged = any((out / p).is_file() for p in result.artifacts)
    path = out / "report.html"
    path.write_text(render(result, out if staged or final is None else final))
    return [path]
