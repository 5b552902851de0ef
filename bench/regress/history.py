"""``python -m bench history``: every saved benchmark run over time, and the steps in it.

pytest-benchmark keeps runs (``reports/benchmarks/<machine>/NNNN_<commit>_<time>.json``) but
never looks across them. Here each benchmark becomes a series -- one point per run: its median
with a 95% bootstrap interval -- and change points are found with ruptures' PELT on the log of
the medians (an L2 cost, so a step is a shift of the level; the penalty scales with the
run-to-run noise, estimated robustly from the series itself, so noise alone does not make
steps). Each step is reported with its size and the commit of the first run after it -- what
asv users rely on and pytest-benchmark lacks. The runs of one series must come from one
machine to mean anything; the table says which machine each run came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.regress.benchjson import BenchFileError, Benchmark, load

PENALTY = 4.0  # x noise variance x log(runs): conservative, a change must stand out of the noise
MIN_SEGMENT = 2  # runs on each side of a step


@dataclass
class Run:
    path: Path
    when: datetime
    commit: str  # short id, "+" when the tree was dirty; "?" when unknown
    machine: str
    benchmarks: dict[str, Benchmark]


@dataclass
class Step:
    benchmark: str
    index: int  # the first run after the change
    before: float  # median of the segment before (seconds)
    after: float

    @property
    def change(self) -> float:
        return self.after / self.before - 1


@dataclass
class History:
    runs: list[Run]
    skipped: dict[str, str] = field(default_factory=dict)  # file -> why it was left out

    @property
    def names(self) -> list[str]:
        return sorted({n for r in self.runs for n in r.benchmarks})

    def series(self, name: str) -> list[tuple[int, float, float, float]]:
        """(run index, median, low, high) for each run holding ``name``."""
        out = []
        for i, run in enumerate(self.runs):
            b = run.benchmarks.get(name)
            if b is not None:
                low, high = median_interval(b.data)
                out.append((i, b.median, low, high))
        return out


def median_interval(data: tuple[float, ...]) -> tuple[float, float]:
    """95% interval of the median (the point itself with too few rounds for one)."""
    from bench.measure.stats import median_ci

    m = median_ci(data)
    return (m.low, m.high) if m.has_interval else (m.value, m.value)


def _run(path: Path) -> Run:
    machine, benchmarks = load(path, need_data=False)
    doc = json.loads(path.read_text())
    try:
        when = datetime.fromisoformat(str(doc.get("datetime")))
    except ValueError:
        when = datetime.fromtimestamp(path.stat().st_mtime)
    commit = doc.get("commit_info") or {}
    ident = str(commit.get("id") or "?")[:10] + ("+" if commit.get("dirty") else "")
    return Run(path, when, ident, str(machine.get("node") or machine.get("machine") or "?"),
               {b.name: b for b in benchmarks})


def load_history(paths: list[Path]) -> History:
    """Every pytest-benchmark JSON under ``paths`` (files or folders), oldest first."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(p.rglob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise BenchFileError(f"{p}: no such file or folder; `nox -s bench` saves runs under "
                               "reports/benchmarks/")
    runs, skipped = [], {}
    for f in files:
        try:
            runs.append(_run(f))
        except (BenchFileError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            skipped[str(f)] = str(exc)
    if not runs:
        raise BenchFileError(f"no pytest-benchmark runs under {', '.join(map(str, paths))}"
                           + (f" ({len(skipped)} file(s) were not benchmark runs)" if skipped else "")
                           + "; `nox -s bench` saves them")
    runs.sort(key=lambda r: r.when.timestamp())
    return History(runs, skipped)


def change_points(medians: list[float], penalty: float = PENALTY) -> list[int]:
    """Indices where a new level starts (PELT, L2 cost on log medians); [] for short series."""
    import ruptures

    x = np.log(np.asarray(medians, dtype=float))
    n = len(x)
    if n < 2 * MIN_SEGMENT:
        return []
    # Run-to-run noise from successive differences (robust to the steps themselves): MAD / 0.6745
    # of the differences is sqrt(2) times the noise's standard deviation.
    sigma = float(np.median(np.abs(np.diff(x) - np.median(np.diff(x)))) / 0.6745 / np.sqrt(2))
    sigma = max(sigma, 1e-3)  # a perfectly flat series: 0.1% is the smallest step worth naming
    algo = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(x.reshape(-1, 1))
    return [b for b in algo.predict(pen=penalty * sigma**2 * np.log(n)) if b < n]


def steps(history: History, name: str) -> list[Step]:
    points = history.series(name)
    medians = [m for _, m, _, _ in points]
    found = []
    bounds = [0, *change_points(medians), len(points)]
    for k in range(1, len(bounds) - 1):
        before = float(np.median(medians[bounds[k - 1]:bounds[k]]))
        after = float(np.median(medians[bounds[k]:bounds[k + 1]]))
        found.append(Step(name, points[bounds[k]][0], before, after))
    return found


def table(history: History, names: list[str]) -> list[dict[str, object]]:
    rows = []
    for name in names:
        for s in steps(history, name):
            run = history.runs[s.index]
            rows.append({"benchmark": name, "run": s.index + 1,
                         "when": run.when.isoformat(timespec="minutes"), "commit": run.commit,
                         "before_ms": s.before * 1e3, "after_ms": s.after * 1e3,
                         "change": f"{s.change:+.1%}", "file": run.path.name})
    return rows


def _figure(history: History, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    cols = 2 if len(names) > 1 else 1
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 2.6 * rows), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes.flat, names, strict=False):
        points = history.series(name)
        x = [i + 1 for i, _, _, _ in points]
        med = np.array([m for _, m, _, _ in points]) * 1e3
        low = np.array([lo for _, _, lo, _ in points]) * 1e3
        high = np.array([hi for _, _, _, hi in points]) * 1e3
        ax.errorbar(x, med, yerr=[med - low, high - med], fmt="o-", capsize=3, markersize=3)
        for s in steps(history, name):
            ax.axvline(s.index + 1 - 0.5, color="#d62728", linestyle="--",
                       label=f"step {s.change:+.0%} at run {s.index + 1}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("run")
        ax.set_ylabel("ms (median, 95% CI)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(history: History, names: list[str], out: Path) -> list[Path]:
    """history.md (the steps found, the runs read), history.csv (every point), history.png."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    points = [{"benchmark": n, "run": i + 1, "when": history.runs[i].when.isoformat(),
               "commit": history.runs[i].commit, "median_s": m, "ci_low_s": lo, "ci_high_s": hi}
              for n in names for i, m, lo, hi in history.series(n)]
    csv, md, png = out / "history.csv", out / "history.md", out / "history.png"
    pd.DataFrame(points).to_csv(csv, index=False, float_format="%.6g")
    found = pd.DataFrame(table(history, names))
    lines = ["# Benchmark history", "",
             f"{len(history.runs)} runs, {history.runs[0].when:%Y-%m-%d %H:%M} to "
             f"{history.runs[-1].when:%Y-%m-%d %H:%M}; {len(names)} benchmarks. Steps found by PELT "
             "(ruptures, L2 cost on log medians, penalty scaled by the run-to-run noise):", "",
             found.to_markdown(index=False, floatfmt=".3f") if not found.empty else "No steps found.",
             "", "Runs:", ""]
    lines += [f"{i + 1}. {r.when:%Y-%m-%d %H:%M} commit {r.commit} on {r.machine} ({r.path.name})"
              for i, r in enumerate(history.runs)]
    if history.skipped:
        lines += ["", "Left out:", ""] + [f"- {f}: {why}" for f, why in history.skipped.items()]
    md.write_text("\n".join(lines) + "\n")
    _figure(history, names, png)
    return [md, csv, png]
