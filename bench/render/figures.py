"""speedup.png (the one speedup figure: 95% error bars, the compute-only bound marked) and
breakdown.png (where each variant's step goes)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt

from bench.measure import derive
from bench.measure.engine import BOUND
from bench.measure.result import Result

COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")


def speedup(result: Result, path: Path) -> None:
    rows = derive.ladder(result)
    base = result.baseline
    fig, ax = plt.subplots(figsize=(max(7.0, 0.8 * len(rows)), 4.5), layout="constrained")
    names = [r.variant for r in rows]
    values = [r.speedup.value for r in rows]
    err = [[max(r.speedup.value - r.speedup.low, 0) for r in rows],
           [max(r.speedup.high - r.speedup.value, 0) for r in rows]]
    bars = ax.bar(names, values, yerr=err, capsize=4, color="#1f77b4", ecolor="black")
    ax.bar_label(bars, labels=[f"{v:.2f}x" for v in values], label_type="center", color="white")
    if base and BOUND in result.rounds and result.bound_of in result.rounds:
        bound = derive.speedup(result, BOUND, base)
        ax.axhline(bound.value, color="#d62728", linestyle="--",
                   label=f"compute-only bound of {result.bound_of} ({bound.value:.2f}x)")
        ax.axhspan(bound.low, bound.high, color="#d62728", alpha=0.1)
        ax.legend(loc="upper left")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    if len(names) > 5:
        ax.tick_params(axis="x", labelrotation=35)
    ax.set_ylabel(f"speedup per step vs {base} (x, 95% CI)")
    ax.set_title(f"What each variant buys ({result.machine.device}, {result.machine.threads} threads)")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def breakdown(result: Result, path: Path) -> None:
    names = result.measured
    shares = {n: derive.shares(result, n) for n in names}
    parts = list(dict.fromkeys(p for n in names for p in shares[n]))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.8 * len(names)), 4.5), layout="constrained")
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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: Result, out: Path) -> list[Path]:
    if not result.measured:
        return []
    paths = [out / "speedup.png", out / "breakdown.png"]
    speedup(result, paths[0])
    breakdown(result, paths[1])
    return paths
