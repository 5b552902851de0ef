"""summary.md: the finding in a few sentences, the variants with intervals (ordered variants also
against the one before), what each change buys, where the time goes, the measured epochs, the
profilers' overhead and files, the workload's own section, what was skipped or failed -- all
from run.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bench.defaults import UNHOOKED
from bench.measure import derive, stats
from bench.measure.result import Result
from bench.measure.stats import Verdict
from bench.render import memory, script, statements, tries


def _ratio_cell(r: stats.Ratio | None, digits: int = 2) -> str:
    if r is None:
        return "-"
    return r.text(digits) if r.measurable else "not measurable (see below)"


def _footprint_cells(result: Result, names: list[str]) -> dict[str, list[str]]:
    """samples/s (95% CI), peak MB, GFLOP/step and MFU, for the columns some variant has."""
    unit = derive.samples_per_batch(result, names[0])[1] if names else "samples"
    cells: dict[str, list[str]] = {}
    rates = [derive.throughput(result, n) for n in names]
    if any(rates):
        cells[f"{unit}/s (95% CI)"] = [
            "-" if r is None else f"{r.value:,.0f}"
            + (f" ({r.low:,.0f}-{r.high:,.0f})" if r.has_interval else "") for r in rates]
    for title, fn, fmt in (("peak MB", derive.peak_mb, "{:,.1f}"),
                           ("GFLOP/step", derive.gflop_per_step, "{:.3f}"), ("MFU", derive.mfu, "{:.1%}")):
        values = [fn(result, n) for n in names]
        if any(v is not None for v in values):
            cells[title] = ["-" if v is None else fmt.format(v) for v in values]
    return cells


def _footprint_note(result: Result) -> list[str]:
    if not result.peak:
        return []
    peak = result.peak
    return [f"Throughput = samples per step / the median step (its interval from the median's). Peak MB: "
            "the most live bytes one step needed (on the CPU as PyTorch's allocator reported them in "
            "one profiled step; on CUDA max_memory_allocated). GFLOP/step: FlopCounterMode over one "
            "step (matmuls and convolutions). MFU = FLOPs / median step / the machine's peak, "
            f"{peak['flops'] / 1e9:,.1f} GFLOP/s ({peak['source']}"
            + (f"; measured matmul peak {peak['measured_flops'] / 1e9:,.1f} GFLOP/s"
               if peak.get("measured_flops") and peak["measured_flops"] != peak["flops"] else "") + ")."]


def _variants(result: Result) -> list[str]:
    found = derive.rows(result)
    if not found:
        return []
    table: dict[str, list[str]] = {
        "variant": [r.variant for r in found],
        "step ms (median)": [f"{r.median_ms:.2f}" for r in found],
        "speedup vs baseline (95% CI)": [_ratio_cell(r.speedup) for r in found],
        "verdict": [r.verdict or "baseline" for r in found],
    }
    if any(r.efficiency is not None for r in found):
        table["vs its compute-only bound (95% CI)"] = [_ratio_cell(r.efficiency) for r in found]
    table.update(_footprint_cells(result, [r.variant for r in found]))
    if result.ordered:
        table["vs previous (95% CI)"] = [_ratio_cell(r.vs_previous, 3) if r.vs_previous else ""
                                         for r in found]
        table["verdict vs previous"] = [r.verdict_vs_previous or "-" for r in found]
    caveats = {f"`{r.variant}`: {x.caveat}" for r in found
               for x in (r.speedup, r.efficiency, r.vs_previous) if x is not None and x.caveat}
    title = "## Variants"
    against = ("each variant against the baseline and the variant before it" if result.ordered
               else "each variant against the baseline (the first)")
    return [title, "", pd.DataFrame(table).to_markdown(index=False), "",
            *([f"Not measurable on this run: {'; '.join(sorted(caveats))}.", ""] if caveats else []),
            f"Speedup = baseline's step time / this one's (above 1: faster), {against}. `unchanged` = "
            "the 95% interval lies within +-5%: no difference that matters; `noisy` = not measurable "
            "on this run: the interval holds 1 and reaches beyond +-5%, or the rounds broke what it "
            "assumes. Each sample is one "
            "round's mean step time; the rounds of all variants were interleaved (order rotated "
            "every round) and are paired in the bootstrap, after checking that the pairs show no "
            "trend and no order effect.", *_footprint_note(result), ""]


COUNTERS = {"ops/step": "op_calls_per_step", "Python calls/step": "python_calls_per_step",
            "H2D copies/step": "h2d_copies_per_step"}


def _parts(result: Result) -> list[str]:
    rows = []
    for name in result.measured:
        shares = derive.shares(result, name)
        est = derive.epoch_estimate(result, name)
        measured = derive.epoch_measured(result, name)
        counters = result[name].counters
        rows.append({"variant": name, **{p: f"{s:.0%}" for p, s in shares.items()},
                     "epoch s (estimate)": f"{est:.2f}" if est else "-",
                     "epoch s (measured)": ", ".join(f"{s:.2f}" for s in measured) or "-",
                     **{label: f"{counters[key]:g}" if key in counters else "-"
                        for label, key in COUNTERS.items()}})
    if not rows:
        return []
    frame = pd.DataFrame(rows).fillna("-")
    frame = frame[[c for c in frame.columns if c == "variant" or (frame[c] != "-").any()]]
    unlabelled = [n for n in result.measured if not derive.labelled(derive.shares(result, n))]
    hint = ([f"No parts labelled in the step of {statements.names(unlabelled)}: label them with "
             "`part(...)` to see the breakdown (`data` is the harness's own label of `fetch()`).", ""]
            if unlabelled else [])
    notes = ["Shares split the step into its labelled parts (on a GPU from CUDA events, so overlapped "
             "copies are not serialized)."]
    if "epoch s (estimate)" in frame.columns or "epoch s (measured)" in frame.columns:
        notes.append("The epoch estimate is the median step x batches per epoch; measured epochs ran end "
                     "to end over the whole training set.")
    if any(label in frame.columns for label in COUNTERS):
        notes.append("Counters are exact (no noise): operator calls, Python calls, host-to-device copies "
                     "per step.")
    return ["## Where the step goes", "", frame.to_markdown(index=False), "", *hint, " ".join(notes), ""]


def _added(d: stats.Ratio | None) -> str:
    """A paired per-step difference in ms, signed: what the change adds (+) or saves (-)."""
    if d is None:
        return "-"
    if not d.has_interval:
        return f"{d.value * 1e3:+.3f}"
    return f"{d.value * 1e3:+.3f} ({d.low * 1e3:+.3f} to {d.high * 1e3:+.3f})"


def _more_memory(result: Result, name: str, reference: str) -> str:
    own, ref = derive.peak_mb(result, name), derive.peak_mb(result, reference)
    if own is None or ref is None:
        return "-"
    return f"{own - ref:+,.1f}" + (" (needs more: its price)" if own > ref * 1.05 + 0.1 else "")


def _changes(result: Result) -> list[str]:
    found = derive.changes(result)
    if not found:
        return []
    rows = []
    for c in found:
        rows.append({
            "variant": c.variant, "changes": f"`{c.reference}`", "speedup (95% CI)": c.speedup.text(),
            "verdict": c.verdict, "ms per step vs it (95% CI)": _added(c.added_s),
            "one-off s": f"{round(c.one_off_s, 2) + 0.0:.2f}",
            "pays off after": ("-" if c.payoff_steps is None else f"{c.payoff_steps:,.0f} steps"),
            "peak MB vs it": _more_memory(result, c.variant, c.reference),
        })
    pays = [c for c in found if c.verdict == Verdict.FASTER]
    costs = [c for c in found if c.verdict == Verdict.SLOWER]
    same = [c for c in found if c.verdict == Verdict.UNCHANGED]
    unknown = [c for c in found if c.verdict == Verdict.NOISY]
    said = []
    if pays:
        said.append("Pays off on this machine: " + ", ".join(
            f"`{c.variant}` ({c.speedup.text()} vs `{c.reference}`)" for c in pays) + ".")
    if costs:
        said.append("Costs time here: " + ", ".join(
            f"`{c.variant}` ({c.speedup.text()} vs `{c.reference}`)" for c in costs) + ".")
    if same:
        said.append("No measurable difference: " + ", ".join(
            f"`{c.variant}` ({c.speedup.ci()})" for c in same) + ".")
    if unknown:
        said.append("Not measurable on this run: " + "; ".join(
            f"`{c.variant}` ({c.speedup.caveat})" for c in unknown) + ".")
    return ["## What each change buys", "", *said, "",
            pd.DataFrame(rows).to_markdown(index=False), "",
            "Each variant against the one it changes one thing of. One-off = its first step minus "
            "its reference's first step (compilation, capture, worker start-up); pays off after = "
            "one-off / time saved per step, shown only where the saving is measurable.", ""]


def _profilers(result: Result) -> list[str]:
    rows = []
    for m in result.measurements:
        tools = [t for t in m.profiles if t != UNHOOKED]  # observing's own cost is said in the header
        if tools:
            rows.append({"variant": m.name, **{t: statements.overhead_text(derive.overhead(result, m.name, t))
                                               for t in tools}})
    lines: list[str] = []
    if rows:
        lines += ["## Profiler overhead", "", pd.DataFrame(rows).fillna("-").to_markdown(index=False), "",
                  "Step time under the profiler / without, from rounds alternated pairwise. Step "
                  "times elsewhere in this report come from rounds with no profiler attached.", ""]
    files = [f"- `{m.name}`: " + ", ".join(f"`{p}`" for p in m.artifacts)
             for m in result.measurements if m.artifacts]
    if files:
        lines += ["## Files", "", *files, "", _openers(result.artifacts), ""]
    return lines


OPENERS = ((".prof", "`snakeviz <name>.prof`"), (".lprof", "`python -m line_profiler <name>.lprof`"),
           (".pt.trace.json", "`tensorboard --logdir tb` (PYTORCH_PROFILER tab) or ui.perfetto.dev"),
           (".memory.pickle", "pytorch.org/memory_viz"))


def _openers(paths: list[str]) -> str:
    """How to open the files that are there (and only those)."""
    said = [how for suffix, how in OPENERS if any(p.endswith(suffix) for p in paths)]
    return "Open with " + ", ".join(said) + "." if said else ""


def _header(result: Result) -> list[str]:
    env = result.machine
    took = f" (measuring took {_duration(result.duration_s)})" if result.duration_s else ""
    lines = [f"Started {result.created}{took} on {env.describe()}, Python {env.python}. "
             f"{result.spec.title()}."]
    described = {m.name: m.description for m in result.measurements
                 if m.bound_of is None and m.description}
    if described and len(set(described.values())) == 1 and len(described) > 1:
        lines.append(f"Every variant: {next(iter(described.values()))}.")
    else:
        lines += [f"- `{n}`: {d}" for n, d in described.items()]
    return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _not_measured(result: Result) -> list[str]:
    lines = []
    for m in result.measurements:
        if m.status == "ok" or m.bound_of is not None:
            continue
        kept = ""
        if m.status == "failed":
            unit = {"rounds": "interleaved rounds"}.get(result.spec.samples_are, result.spec.samples_are)
            what = [f"{len(m.samples)} {unit}" if m.samples else "",
                    f"{len(m.epochs)} full epoch(s)" if m.epochs else ""]
            kept = ("; kept what it measured before: " + " and ".join(w for w in what if w)
                    if any(what) else "; nothing of it was measured")
        lines.append(f"- `{m.name}` ({m.status}): {m.reason}{kept}")
    lines += [f"- `{k}` (partial): {why}" for k, why in result.partial.items()]
    return ["## Not measured", "", *lines, ""] if lines else []


def _title(result: Result) -> list[str]:
    return ["# Summary", ""]


def _script_header(result: Result) -> list[str]:
    env = result.machine
    took = f" (took {_duration(result.duration_s)})" if result.duration_s else ""
    return [f"Started {result.created}{took} on {env.describe()}, Python {env.python}.",
            *script.how_it_ran(result), "", *([said, ""] if (said := script.headline(result)) else [])]


def _fit_header(result: Result) -> list[str]:
    env = result.machine
    took = f" (took {_duration(result.duration_s)})" if result.duration_s else ""
    return [f"Started {result.created}{took} on {env.describe()}, Python {env.python}. "
            f"{result.spec.title()}: a process at each batch size, its DataLoaders' `batch_size` patched.",
            ""]


def _variants_header(result: Result) -> list[str]:
    return [*_header(result), "", statements.headline(result), "", *statements.noise(result), ""]


Section = Callable[[Result], list[str]]


def markdown(result: Result) -> str:
    lines = [line for section in SECTIONS[result.kind] for line in section(result)]
    return "\n".join(lines).rstrip() + "\n"


def workload_section(result: Result) -> list[str]:
    """The workload's own section (its factory's ``report``), loaded by name from the run."""
    report = getattr(result.spec, "report", None)
    if not report or not result.measured:
        return []
    from bench.workload import load_function

    try:
        return [*load_function(report)(result), ""]
    except Exception as exc:  # a user's hook must not cost the rest of the report
        return [f"(The workload's own section `{report}` could not be rendered: "
                f"{type(exc).__name__}: {exc}.)", ""]


# The sections of summary.md by the Result's kind, in order: a new kind adds its list here.
SECTIONS: dict[str, list[Section]] = {
    "variants": [_title, _variants_header, _variants, _changes, _parts, memory.markdown, _profilers,
                 workload_section, _not_measured],
    "script": [_title, _script_header, memory.oom_markdown, script.ranks, _parts, memory.markdown, _profilers,
               _not_measured],
    "try": [_title, tries.markdown],
    "fit": [_title, _fit_header, memory.fit_markdown, memory.markdown, _not_measured],
}


def write(result: Result, out: Path) -> list[Path]:
    path = out / "summary.md"
    path.write_text(markdown(result))
    return [path]
