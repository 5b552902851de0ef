"""speedup.png (the one speedup figure: 95% error bars, each variant's own compute-only bound
marked on its bar) and
breakdown.png (where each variant's step goes)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt

from bench.measure import derive
from bench.measure.result import Result

COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")


def speedup(result: Result, path: Path) -> None:
    rows = derive.rows(result)
    base = result.baseline
    fig, ax = plt.subplots(figsize=(max(7.0, 0.8 * len(rows)), 4.5), layout="constrained")
    names = [r.variant for r in rows]
    # A ratio that is not measurable on this run is drawn hatched, without an interval.
    values = [r.speedup.value for r in rows]
    err = [[max(r.speedup.value - r.speedup.low, 0) if r.speedup.measurable else 0 for r in rows],
           [max(r.speedup.high - r.speedup.value, 0) if r.speedup.measurable else 0 for r in rows]]
    bars = ax.bar(names, values, yerr=err, capsize=4, color="#1f77b4", ecolor="black")
    for bar, r in zip(bars, rows, strict=True):
        if not r.speedup.measurable:
            bar.set_hatch("//")
            bar.set_alpha(0.5)
    ax.bar_label(bars, labels=[f"{r.speedup.value:.2f}x" if r.speedup.measurable else "n/m" for r in rows],
                 label_type="center", color="white")
    # Each variant's own compute-only bound, on its own bar: what that variant would reach if
    # its data cost nothing (in the baseline's units, like the bar).
    labelled = False
    for i, r in enumerate(rows):
        bound = result.bound_of(r.variant)
        if bound is None or base is None:
            continue
        up = derive.speedup(result, bound, base)
        ax.hlines(up.value, i - 0.4, i + 0.4, colors="#d62728", linestyles="--",
                  label=None if labelled else "its compute-only bound (95% CI)")
        if up.measurable:
            ax.fill_between([i - 0.4, i + 0.4], up.low, up.high, color="#d62728", alpha=0.15)
        labelled = True
    if labelled:
        ax.legend(loc="upper left")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    if len(names) > 5:
        ax.tick_params(axis="x", labelrotation=35)
    ax.set_ylabel(f"speedup per step vs {base} (x, 95% CI)")
    ax.set_title(f"What each variant buys ({result.machine.device}, {result.machine.threads} threads)")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def breakdown(result: Result, path: Path) -> None:
    """Where each variant's step goes (stacked parts, ms) and, beside it where measured, the
    peak memory one step needed."""
    names = result.measured
    shares = {n: derive.shares(result, n) for n in names}
    parts = list(dict.fromkeys(p for n in names for p in shares[n]))
    memory = {n: derive.peak_mb(result, n) for n in names}
    with_memory = any(v is not None for v in memory.values())
    width = max(7.0, 0.8 * len(names))
    fig, axes = plt.subplots(1, 2 if with_memory else 1, figsize=(width * (1.6 if with_memory else 1), 4.5),
                             layout="constrained", squeeze=False,
                             gridspec_kw={"width_ratios": [2, 1]} if with_memory else None)
    ax = axes[0][0]
    bottom = [0.0] * len(names)
    for i, part in enumerate(parts):
        ms = [derive.step_seconds(result, n) * shares[n].get(part, 0.0) * 1e3 for n in names]
        ax.bar(names, ms, bottom=bottom, label=part, color=COLORS[i % len(COLORS)])
        bottom = [b + m for b, m in zip(bottom, ms, strict=True)]
    if len(names) > 5:
        ax.tick_params(axis="x", labelrotation=35)
    ax.set_ylabel("time per training step (ms, median)")
    ax.set_title(f"Where a step's time goes ({result.machine.device})")
    ax.legend(title="part")
    if with_memory:
        mem = axes[0][1]
        mem.bar(names, [memory[n] or 0.0 for n in names], color="#7f7f7f")
        mem.set_ylabel("peak memory of one step (MB)")
        mem.set_title("What a step needs")
        if len(names) > 3:
            mem.tick_params(axis="x", labelrotation=35)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: Result, out: Path) -> list[Path]:
    """breakdown.png; speedup.png where the measurements are alternatives (variants), not a
    script's one process or its ranks (a rank buys nothing over rank 0: their skew is
    summary.md's ranks table and report.html's forest plot)."""
    if not result.measured:
        return []
    paths = [out / "breakdown.png"]
    breakdown(result, paths[0])
    if result.kind != "script":
        paths.append(out / "speedup.png")
        speedup(result, paths[-1])
    return paths
