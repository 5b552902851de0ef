"""breakdown.png (where a step's time goes, per pipeline) and speedup.png (vs naive)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt

from bench.runner import PHASES, ProfileReport

COLORS = {"data": "#d62728", "forward": "#1f77b4", "backward": "#2ca02c", "optimizer": "#9467bd"}


def _breakdown(report: ProfileReport, path: Path) -> None:
    names = [r.pipeline for r in report.runs]
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    bottom = [0.0] * len(names)
    for phase in PHASES:
        ms = [r.median_step * r.share(phase) * 1e3 for r in report.runs]
        ax.bar(names, ms, bottom=bottom, label=phase, color=COLORS[phase])
        bottom = [b + m for b, m in zip(bottom, ms, strict=True)]
    env = report.runs[0].environment
    ax.set_ylabel("time per training step (ms)")
    ax.set_title(f"Where a step's time goes (batch {report.runs[0].spec.batch_size}, {env.device})")
    ax.legend(title="phase")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _speedup(report: ProfileReport, path: Path) -> None:
    base = next((r for r in report.runs if r.pipeline == "naive"), report.runs[0])
    names = [r.pipeline for r in report.runs]
    speedups = [base.median_step / r.median_step for r in report.runs]
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    bars = ax.bar(names, speedups, color="#1f77b4")
    ax.bar_label(bars, labels=[f"{s:.2f}x" for s in speedups])
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel(f"speedup per step vs {base.pipeline} (x)")
    ax.set_title(f"Training-step speedup ({report.runs[0].environment.device})")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(report: ProfileReport, out: Path) -> list[Path]:
    if not report.runs:
        return []
    breakdown, speedup = out / "breakdown.png", out / "speedup.png"
    _breakdown(report, breakdown)
    _speedup(report, speedup)
    return [breakdown, speedup]
