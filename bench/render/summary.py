"""summary.md: the finding in a few sentences, the ladder with intervals, where the time goes,
the measured epochs, the profilers' overhead and files, what was skipped -- all from run.json."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.measure import derive, stats
from bench.measure.result import Result
from bench.render import statements
from bench.render.tables import ladder_frame


def _ladder(result: Result) -> list[str]:
    frame = ladder_frame(result)
    if frame.empty:
        return []
    shown = pd.DataFrame({
        "variant": frame["variant"], "step ms (median)": frame["median_ms"].map("{:.2f}".format),
        "speedup vs baseline (95% CI)": [f"{v:.2f} ({lo:.2f}-{hi:.2f})" for v, lo, hi
                                         in zip(frame["speedup_vs_baseline"], frame["ci_low"],
                                                frame["ci_high"], strict=True)],
        "vs previous (95% CI)": ["" if pd.isna(v) else f"{v:.3f} ({lo:.3f}-{hi:.3f})" for v, lo, hi
                                 in zip(frame["vs_previous"], frame["vs_previous_ci_low"],
                                        frame["vs_previous_ci_high"], strict=True)],
        "verdict vs previous": [v or "-" for v in frame["verdict_vs_previous"]],
    })
    return ["## The ladder", "", shown.to_markdown(index=False), "",
            "Speedup = baseline's step time / this one's (above 1: faster). `same` = the 95% interval "
            "holds 1: no measurable difference, so no ranking. Each sample is one round's mean step "
            "time; the rounds of all variants were interleaved (order rotated every round) and are "
            "paired in the bootstrap.", ""]


COUNTERS = {"ops/step": "op_calls_per_step", "Python calls/step": "python_calls_per_step",
            "H2D copies/step": "h2d_copies_per_step"}


def _parts(result: Result) -> list[str]:
    rows = []
    for name in result.measured:
        shares = derive.shares(result, name)
        est = derive.epoch_estimate(result, name)
        measured = derive.epoch_measured(result, name)
        counters = result.counters.get(name, {})
        rows.append({"variant": name, **{p: f"{s:.0%}" for p, s in shares.items()},
                     "epoch s (estimate)": f"{est:.2f}" if est else "-",
                     "epoch s (measured)": ", ".join(f"{s:.2f}" for s in measured) or "-",
                     **{label: f"{counters[key]:g}" if key in counters else "-"
                        for label, key in COUNTERS.items()}})
    if not rows:
        return []
    return ["## Where the step goes", "", pd.DataFrame(rows).fillna("-").to_markdown(index=False), "",
            "Shares split the step into its labelled parts (on a GPU from CUDA events, so overlapped "
            "copies are not serialized). The epoch estimate is the median step x batches per epoch; "
            "measured epochs ran end to end over the whole training set. Counters are exact (no "
            "noise): operator calls, Python calls, host-to-device copies per step.", ""]


def _added(d: stats.Ratio | None) -> str:
    """A paired per-step difference in ms, signed: what the change adds (+) or saves (-)."""
    if d is None:
        return "-"
    if not d.has_interval:
        return f"{d.value * 1e3:+.3f}"
    return f"{d.value * 1e3:+.3f} ({d.low * 1e3:+.3f} to {d.high * 1e3:+.3f})"


def _changes(result: Result) -> list[str]:
    found = derive.changes(result)
    if not found:
        return []
    rows = []
    for c in found:
        notes = result.info[c.variant].get("notes") or {}
        dynamo = notes.get("dynamo")
        rows.append({
            "variant": c.variant, "changes": f"`{c.reference}`", "speedup (95% CI)": c.speedup.text(),
            "verdict": c.verdict, "ms per step vs it (95% CI)": _added(c.added_s),
            "one-off s": f"{round(c.one_off_s, 2) + 0.0:.2f}",
            "pays off after": ("-" if c.payoff_steps is None else f"{c.payoff_steps:,.0f} steps"),
            "graph breaks (whole step)": (f"{dynamo['graph_breaks']} ({'; '.join(dynamo['reasons'])})"
                                          if dynamo else "-"),
        })
    pays = [c for c in found if c.verdict == "faster"]
    costs = [c for c in found if c.verdict == "slower"]
    same = [c for c in found if c.verdict == "same"]
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
    return ["## What each change buys", "", *said, "",
            pd.DataFrame(rows).to_markdown(index=False), "",
            "Each variant against the one it changes one thing of. One-off = its first step minus "
            "its reference's first step (compilation, capture, worker start-up); pays off after = "
            "one-off / time saved per step, shown only where the saving is measurable. Graph "
            "breaks: what `torch._dynamo.explain` finds in the whole eager step, which is why the "
            "compiled variants compile forward+loss and the update as separate graphs.", "",
            *_grid(result)]


def _grid(result: Result) -> list[str]:
    """Data rung x step variant: each cell the median step, epoch estimate and speedup vs baseline."""
    base = result.baseline
    cells: dict[str, dict[str, str]] = {}
    steps: list[str] = ["(as is)"]
    for name in result.measured:
        rung, _, step = name.partition("+")
        step = step or "(as is)"
        if step not in steps:
            steps.append(step)
        up = derive.speedup(result, name, base) if base else None
        est = derive.epoch_estimate(result, name)
        cells.setdefault(rung, {})[step] = (
            f"{derive.step_seconds(result, name) * 1e3:.2f} ms, "
            + (f"{est:.1f} s/epoch, " if est else "")
            + (f"{up.value:.2f}x ({up.low:.2f}-{up.high:.2f})" if up else ""))
    if len(steps) == 1:
        return []
    frame = pd.DataFrame([{"data rung": rung, **{s: row.get(s, "") for s in steps}}
                          for rung, row in cells.items()])
    return ["### Data rung x step variant", "", frame.to_markdown(index=False), "",
            f"Each cell: median step, epoch estimate, speedup vs `{base}` (95% CI).", ""]


def _profilers(result: Result) -> list[str]:
    rows = []
    for name, tools in result.profiles.items():
        rows.append({"variant": name, **{t: statements.overhead_text(derive.overhead(result, name, t))
                                         for t in tools}})
    lines: list[str] = []
    if rows:
        lines += ["## Profiler overhead", "", pd.DataFrame(rows).fillna("-").to_markdown(index=False), "",
                  "Step time under the profiler / without, from rounds alternated pairwise. Step "
                  "times elsewhere in this report come from rounds with no profiler attached.", ""]
    files = [f"- `{name}`: " + ", ".join(f"`{p}`" for p in paths)
             for name, paths in result.artifacts.items()]
    if files:
        lines += ["## Files", "", *files, "",
                  "Open with `snakeviz <variant>.prof`, `python -m line_profiler <variant>.lprof`, "
                  "`tensorboard --logdir tb` (PYTORCH_PROFILER tab) or ui.perfetto.dev.", ""]
    return lines


def markdown(result: Result) -> str:
    env = result.machine
    data = {i.get("data") for i in result.info.values() if i.get("data")}
    lines = ["# Summary", "",
             f"Made {result.created} on {env.describe()}, Python {env.python}. Workload "
             f"`{result.spec.get('workload')}`" + (f"; data: {'; '.join(sorted(data))}." if data else "."),
             "", statements.headline(result), "", *statements.noise(result), "",
             *_ladder(result), *_changes(result), *_parts(result), *_profilers(result)]
    not_run = [(v, result.status.get(v, "?"), result.reasons.get(v, "")) for v in result.variants
               if result.status.get(v) != "ok"]
    not_run += [(k, "partial", why) for k, why in result.reasons.items() if "/" in k]
    if not_run:
        lines += ["## Not measured", ""] + [f"- `{v}` ({status}): {why}" for v, status, why in not_run]
    return "\n".join(lines).rstrip() + "\n"


def write(result: Result, out: Path) -> list[Path]:
    path = out / "summary.md"
    path.write_text(markdown(result))
    return [path]
