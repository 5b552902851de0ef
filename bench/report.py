"""``python -m bench report``: the benchmark table in summary.md and bench.png.

Reads the newest saved pytest-benchmark run (raw per-round times), and shows per rung: step
time (median, IQR), samples/s, epoch time, speedup over ``naive`` and over the previous rung,
and the deterministic counters; and the efficiency of ``optimized``: its step time over the
compute-only bound (1.00 = the data pipeline costs nothing).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bench.results import Benchmark, load
from vae.pipelines import LADDER, PIPELINES

START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def _by(benchmarks: list[Benchmark], group: str) -> dict[str, Benchmark]:
    return {b.params.get("pipeline", b.name): b for b in benchmarks if b.group == group}


def ladder_frame(benchmarks: list[Benchmark]) -> pd.DataFrame:
    step, epoch, fetch = (_by(benchmarks, g) for g in ("step", "epoch", "fetch"))
    rows, previous = [], None
    naive = step.get("naive")
    for name in LADDER:
        if name not in step:
            continue
        b = step[name]
        rows.append({
            "pipeline": name,
            "step_ms": b.median * 1e3, "step_iqr_ms": b.iqr * 1e3,
            "samples_per_s": b.extra_info.get("batch_size", 100) / b.median,
            "fetch_ms": fetch[name].median * 1e3 if name in fetch else float("nan"),
            "epoch_s": epoch[name].median if name in epoch else float("nan"),
            "epoch_samples": epoch[name].extra_info.get("samples") if name in epoch else None,
            "speedup_vs_naive": naive.median / b.median if naive else float("nan"),
            "speedup_vs_previous": previous.median / b.median if previous else float("nan"),
            "ops_per_step": b.extra_info.get("op_calls_per_step"),
            "py_calls_per_step": b.extra_info.get("python_calls_per_step"),
            "h2d_copies_per_step": b.extra_info.get("h2d_copies_per_step"),
            "rounds": len(b.data),
        })
        previous = b
    return pd.DataFrame(rows)


def efficiency(benchmarks: list[Benchmark]) -> tuple[float, Benchmark | None]:
    """optimized step median / compute-only bound median (nan when either is missing)."""
    step = _by(benchmarks, "step")
    bound = next((b for b in benchmarks if b.name == "test_compute_bound"), None)
    if bound is None or "resident" not in step:
        return float("nan"), bound
    return step["resident"].median / bound.median, bound


def interleaved_efficiency(benchmarks: list[Benchmark]) -> dict | None:
    """The efficiency measured in alternating pairs (extra_info of that benchmark), if run."""
    pair = next((b for b in benchmarks if b.name == "test_efficiency_interleaved"), None)
    return pair.extra_info if pair is not None and "efficiency" in pair.extra_info else None


def markdown(path: Path, machine: dict, benchmarks: list[Benchmark]) -> str:
    frame = ladder_frame(benchmarks)
    eff, bound = efficiency(benchmarks)
    info = benchmarks[0].extra_info if benchmarks else {}
    where = info.get("gpu") if info.get("device") == "cuda" else f"CPU only, {info.get('threads')} threads"
    lines = [START, "", "## Benchmarks (pytest-benchmark)", "",
             f"From `{path}`; machine: {info.get('cpu', machine.get('cpu', {}).get('brand_raw', '?'))}, "
             f"{where}, torch {info.get('torch')}; data: {info.get('dataset')}.", ""]
    if frame.empty:
        lines.append("No `step` benchmarks in this run.")
    else:
        lines.append(frame.to_markdown(index=False, floatfmt=".2f"))
        lines.append("")
        inter = interleaved_efficiency(benchmarks)
        if inter is not None:
            low, high = inter["efficiency_ci"]
            lines += [
                f"**Efficiency of `optimized`: {inter['efficiency']:.3f}** (95% CI {low:.3f}-{high:.3f}) "
                f"-- its step ({inter['optimized_ms']:.2f} ms) over the compute-only bound "
                f"({inter['bound_ms']:.2f} ms: the same step on one resident batch), measured in "
                "alternating pairs so machine drift hits both alike. 1.00 = the data pipeline "
                "costs nothing.", ""]
        if bound is not None:
            lines.append(
                f"From the separate `step` and `components` benchmarks the same ratio reads "
                f"{eff:.2f} (bound {bound.median * 1e3:.2f} ms); they ran minutes apart, so "
                "machine drift between them shows up in it.")
    missing = [n for n in LADDER if n not in set(frame.get("pipeline", []))]
    if missing:
        lines += [""] + [f"- `{n}` skipped: " + ("needs CUDA, none on this machine"
                         if PIPELINES[n].needs_cuda else "not in this run (or it failed)")
                         for n in missing]
    lines += ["", "Medians over rounds; IQR = spread of the middle half. Raw per-round times are "
              "in the JSON (`python -m bench compare OLD.json NEW.json` tests a change).", "", END]
    return "\n".join(lines) + "\n"


def plot(benchmarks: list[Benchmark], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = ladder_frame(benchmarks)
    eff, bound = efficiency(benchmarks)
    inter = interleaved_efficiency(benchmarks)
    if inter is not None:
        eff = inter["efficiency"]
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    bars = ax.bar(frame["pipeline"], frame["speedup_vs_naive"], color="#1f77b4")
    ax.bar_label(bars, labels=[f"{s:.2f}x" for s in frame["speedup_vs_naive"]])
    if bound is not None and "naive" in set(frame["pipeline"]):
        naive_ms = frame.loc[frame["pipeline"] == "naive", "step_ms"].iloc[0]
        ax.axhline(naive_ms / (bound.median * 1e3), color="#d62728", linestyle="--",
                   label="compute-only bound (data for free)")
        ax.legend(loc="upper left")
    ax.set_yscale("log")
    ax.set_ylabel("training-step speedup vs naive (x, log scale)")
    device = benchmarks[0].extra_info.get("device", "?") if benchmarks else "?"
    ax.set_title(f"What each rung buys ({device}; efficiency of optimized: {eff:.2f})")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(json_path: Path, out: Path) -> list[Path]:
    """Insert (or replace) the benchmark section of ``out/summary.md``; write ``out/bench.png``."""
    machine, benchmarks = load(json_path, need_data=False)
    summary = out / "summary.md"
    section = markdown(json_path, machine, benchmarks)
    text = summary.read_text() if summary.exists() else "# Summary\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END) + r"\n?", re.S)
    text = pattern.sub("", text).rstrip("\n") + "\n\n" + section
    tmp = summary.with_suffix(".md.partial")
    tmp.write_text(text)
    tmp.replace(summary)
    png = out / "bench.png"
    plot(benchmarks, png)
    return [summary, png]
