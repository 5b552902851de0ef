"""summary.csv and summary.md: one row per pipeline, and the finding in one sentence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.runner import PHASES, TOOLS, ProfileReport

SUMMARY_COLUMNS = (
    "pipeline", "device", "steps", "step_ms_median", "step_ms_iqr",
    *(f"{p}_share" for p in PHASES), "epoch_s_est", "samples_per_s", "speedup_vs_naive",
    *(f"{t}_overhead" for t in TOOLS), "dataset", "cpu", "threads", "torch", "gpu", "created",
)


def summary_frame(report: ProfileReport) -> pd.DataFrame:
    """The summary table: raw step times reduced to medians, shares and ratios."""
    naive = next((r for r in report.runs if r.pipeline == "naive"), None)
    rows = []
    for run in report.runs:
        env = run.environment
        row: dict[str, object] = {
            "pipeline": run.pipeline, "device": run.spec.device, "steps": len(run.step_times),
            "step_ms_median": run.median_step * 1e3, "step_ms_iqr": run.step_iqr * 1e3,
            **{f"{p}_share": run.share(p) for p in PHASES},
            "epoch_s_est": run.epoch_seconds, "samples_per_s": run.samples_per_second,
            "speedup_vs_naive": naive.median_step / run.median_step if naive else float("nan"),
            **{f"{t}_overhead": run.overhead(t) if t in run.passes else float("nan") for t in TOOLS},
            "dataset": run.dataset, "cpu": env.cpu, "threads": env.threads, "torch": env.torch,
            "gpu": env.gpu, "created": report.created.isoformat(timespec="seconds"),
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def headline(frame: pd.DataFrame) -> str:
    """Which pipeline is fastest and by how much, and where ``naive`` loses its time."""
    if frame.empty:
        return "No pipeline was profiled."
    fast = frame.loc[frame["step_ms_median"].idxmin()]
    slow = frame.loc[frame["step_ms_median"].idxmax()]
    base = frame[frame["pipeline"] == "naive"]
    ref = base.iloc[0] if len(base) else slow
    text = (f"Fastest: `{fast.pipeline}` at {fast.step_ms_median:.2f} ms per step, "
            f"{ref.step_ms_median / fast.step_ms_median:.1f}x faster than `{ref.pipeline}` "
            f"({ref.step_ms_median:.2f} ms).")
    if len(base):
        shares = {p: ref[f"{p}_share"] for p in PHASES}
        top = max(shares, key=shares.get)
        text += f" `naive` spends {shares['data']:.0%} of its step fetching data"
        text += (", its largest part." if top == "data"
                 else f" (its largest part is {top}, {shares[top]:.0%}).")
    return text


def _markdown(report: ProfileReport, frame: pd.DataFrame) -> str:
    shown = frame[["pipeline", "device", "steps", "step_ms_median", "step_ms_iqr",
                   *(f"{p}_share" for p in PHASES), "epoch_s_est", "samples_per_s",
                   "speedup_vs_naive"]].copy()
    for p in PHASES:
        shown[f"{p}_share"] = shown[f"{p}_share"].map("{:.0%}".format)
    env = report.runs[0].environment if report.runs else None
    lines = [
        "# Profile summary", "",
        f"Made {report.created:%Y-%m-%d %H:%M:%S} UTC"
        + (f" on {env.describe()}." if env else "."),
        f"Data: {report.runs[0].dataset}." if report.runs else "", "",
        headline(frame), "",
        shown.to_markdown(index=False, floatfmt=".2f"), "",
        "Step times are medians over the measured steps of a pass with no profiler attached "
        "(IQR = spread of the middle half). Shares split the step into data fetch, forward, "
        "backward and optimizer; on a GPU each part is synchronized to be timed, which adds a "
        "little. The epoch estimate is the median step times the batches per epoch.",
    ]
    overheads = frame[[f"{t}_overhead" for t in TOOLS]].dropna(axis=1, how="all")
    if not overheads.empty:
        lines += ["", "Profiler overhead (median step under the profiler / without):", ""]
        lines.append(pd.concat([frame[["pipeline"]], overheads], axis=1)
                     .to_markdown(index=False, floatfmt=".2f"))
    if report.skipped:
        lines += ["", "Not profiled:", ""]
        lines += [f"- `{name}`: {why}" for name, why in report.skipped.items()]
    return "\n".join(lines) + "\n"


def write(report: ProfileReport, out: Path) -> list[Path]:
    frame = summary_frame(report)
    csv, md = out / "summary.csv", out / "summary.md"
    frame.to_csv(csv, index=False, float_format="%.6g")
    md.write_text(_markdown(report, frame))
    return [csv, md]
