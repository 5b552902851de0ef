"""summary.md: the finding in a few sentences, the ladder with intervals, where the time goes,
the measured epochs, the profilers' overhead and files, what was skipped -- all from run.json."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.measure import derive
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
             *_ladder(result), *_parts(result), *_profilers(result)]
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
