"""Figures derived from a Result's raw samples: medians, ratios with 95% intervals, verdicts.

Every ratio a report states comes from here, with its interval: speedup over the baseline and
over the previous variant, efficiency (a variant over its compute-only bound), profiler
overhead. A sample is one round's seconds per step; rounds of the same run are paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.measure import stats
from bench.measure.engine import BOUND
from bench.measure.result import Result
from bench.measure.stats import Ratio

RESOLUTION = 0.05  # interval half-widths above this: warn that differences of a few % are not resolved


def samples(result: Result, name: str) -> list[float]:
    """Seconds per step, one value per interleaved round."""
    return [t.per_step for t in result.rounds[name]]


def step_seconds(result: Result, name: str) -> float:
    return stats.median(samples(result, name))


def paired(result: Result, a: str, b: str) -> tuple[list[float], list[float]]:
    """The samples of ``a`` and ``b`` from the rounds both took part in, in round order."""
    ta, tb = result.rounds[a], result.rounds[b]
    if all(t.round < 0 for t in (*ta, *tb)):  # rounds not recorded: positional pairs
        n = min(len(ta), len(tb))
        return [t.per_step for t in ta[:n]], [t.per_step for t in tb[:n]]
    by_a, by_b = {t.round: t.per_step for t in ta}, {t.round: t.per_step for t in tb}
    common = sorted(by_a.keys() & by_b.keys())
    return [by_a[r] for r in common], [by_b[r] for r in common]


def speedup(result: Result, name: str, reference: str) -> Ratio:
    """time(reference) / time(name) over the rounds both ran: above 1 means ``name`` is faster."""
    ref, own = paired(result, reference, name)
    return stats.ratio(ref, own)


def efficiency(result: Result) -> Ratio | None:
    """time(variant) / time(its compute-only bound): 1.00 = its data costs nothing."""
    if result.bound_of is None or BOUND not in result.rounds or result.bound_of not in result.rounds:
        return None
    own, bound = paired(result, result.bound_of, BOUND)
    return stats.ratio(own, bound)


def shares(result: Result, name: str) -> dict[str, float]:
    """Share of the step in each part (sum over all timed steps / sum of the step times)."""
    total = sum(sum(t.steps) for t in result.rounds[name])
    parts: dict[str, float] = {}
    for t in result.rounds[name]:
        for part, values in t.parts.items():
            parts[part] = parts.get(part, 0.0) + sum(values)
    order = result.info.get(name, {}).get("parts") or list(parts)
    return {p: parts[p] / total for p in [*order, *[q for q in parts if q not in order]]
            if p in parts and total > 0}


def epoch_estimate(result: Result, name: str) -> float | None:
    """Median seconds per step x batches per epoch (None when the workload does not say)."""
    batches = result.info.get(name, {}).get("batches_per_epoch")
    return step_seconds(result, name) * batches if batches else None


def epoch_measured(result: Result, name: str) -> list[float]:
    return [t.seconds for t in result.epochs.get(name, [])]


def overhead(result: Result, name: str, tool: str) -> Ratio:
    """time under ``tool`` / time without, from rounds interleaved pairwise."""
    tt = result.profiles[name][tool]
    return stats.ratio([t.per_step for t in tt.tool], [t.per_step for t in tt.plain])


def noise(result: Result) -> float:
    """The run's noise: the median over variants of the per-round IQR/median."""
    spreads = [stats.relative_spread(samples(result, n)) for n in result.measured]
    return float(np.median(spreads)) if spreads else float("nan")


def resolution(result: Result) -> float:
    """The median relative half-width of the run's variant-to-variant intervals (vs the previous
    variant): differences much smaller than this were not resolved."""
    widths = [(r.vs_previous.high - r.vs_previous.low) / 2 / r.vs_previous.value
              for r in ladder(result) if r.vs_previous is not None and r.vs_previous.has_interval]
    return float(np.median(widths)) if widths else float("nan")


@dataclass(frozen=True)
class Row:
    """One variant's line of the ladder."""

    variant: str
    median_ms: float
    speedup: Ratio  # vs the baseline
    vs_previous: Ratio | None  # vs the variant before it (None for the first)
    verdict_vs_previous: str  # faster | slower | same | "" for the first


def ladder(result: Result) -> list[Row]:
    names = result.measured
    if not names:
        return []
    base = names[0]
    rows = []
    for i, name in enumerate(names):
        prev = speedup(result, name, names[i - 1]) if i else None
        rows.append(Row(name, step_seconds(result, name) * 1e3, speedup(result, name, base), prev,
                        stats.speed_verdict(prev) if prev else ""))
    return rows


def fastest_group(result: Result) -> tuple[str, list[str]]:
    """The fastest variant, and the others no measurably slower than it (interval holds 1)."""
    names = result.measured
    best = min(names, key=lambda n: step_seconds(result, n))
    tied = [n for n in names if n != best and speedup(result, best, n).verdict == "same"]
    return best, tied


@dataclass(frozen=True)
class Change:
    """A variant against the one it changes one thing of (its ``reference``)."""

    variant: str
    reference: str
    speedup: Ratio  # time(reference) / time(variant)
    verdict: str  # faster | slower | same
    one_off_s: float  # its first step minus the reference's first step: compile, capture, start-up
    payoff_steps: float | None  # steps after which the one-off cost is repaid (None: never)
    added_s: stats.Ratio | None = None  # time(variant) - time(reference) per step, paired rounds


def changes(result: Result) -> list[Change]:
    out = []
    for name in result.measured:
        ref = result.info.get(name, {}).get("reference")
        if not ref or ref not in result.measured:
            continue
        up = speedup(result, name, ref)
        verdict = stats.speed_verdict(up)
        one_off = (result.info[name].get("first_step_s", 0.0) - result.info[ref].get("first_step_s", 0.0))
        saving = step_seconds(result, ref) - step_seconds(result, name)
        payoff = (max(one_off, 0.0) / saving) if verdict == "faster" and saving > 0 else None
        ref_s, own_s = paired(result, ref, name)
        added = stats.difference(own_s, ref_s)
        out.append(Change(name, ref, up, verdict, one_off, payoff, added))
    return out
