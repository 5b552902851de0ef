"""Figures derived from a Result's raw samples: medians, ratios with 95% intervals, verdicts.

Every ratio a report states comes from here, with its interval: speedup over the baseline (and,
for a workload whose variants are ordered, over the previous variant), efficiency (a variant
over its compute-only bound), profiler overhead. A sample is one round's seconds per step;
rounds of the same run are paired, and every paired ratio is checked for what its interval
assumes (:func:`bench.measure.stats.pair_problems`) before it is stated.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from bench.defaults import UNHOOKED
from bench.measure import stats
from bench.measure.result import Result
from bench.measure.stats import Ratio

RESOLUTION = 0.05  # interval half-widths above this: warn that differences of a few % are not resolved
F = TypeVar("F", bound=Callable[..., Any])


def cached(fn: F) -> F:
    """Computed once per Result (a bootstrap takes milliseconds; a report asks for the same
    ratio a dozen times): kept in ``result.cache``, never saved in run.json."""

    @functools.wraps(fn)
    def wrapper(result: Result, *args: Any) -> Any:
        key = (fn.__name__, *args)
        if key not in result.cache:
            result.cache[key] = fn(result, *args)
        return result.cache[key]

    return wrapper  # type: ignore[return-value]


def samples(result: Result, name: str) -> list[float]:
    """Seconds per step, one value per interleaved round."""
    return [t.per_step for t in result[name].samples]


def step_seconds(result: Result, name: str) -> float:
    return stats.median(samples(result, name))


def paired(result: Result, a: str, b: str) -> tuple[list[float], list[float]]:
    """The samples of ``a`` and ``b`` from the rounds both took part in, in round order."""
    a_s, b_s, _ = paired_with_order(result, a, b)
    return a_s, b_s


def paired_with_order(result: Result, a: str, b: str
                      ) -> tuple[list[float], list[float], list[bool] | None]:
    """:func:`paired`, and for each pair whether ``a`` ran before ``b`` in its round (None when
    the rounds' orders were not recorded)."""
    ta, tb = result[a].samples, result[b].samples
    if all(t.round < 0 for t in (*ta, *tb)):  # rounds not recorded: positional pairs
        n = min(len(ta), len(tb))
        return [t.per_step for t in ta[:n]], [t.per_step for t in tb[:n]], None
    by_a, by_b = {t.round: t.per_step for t in ta}, {t.round: t.per_step for t in tb}
    common = sorted(by_a.keys() & by_b.keys())
    first: list[bool] | None = None
    if common and all(r < len(result.orders) and a in result.orders[r] and b in result.orders[r]
                      for r in common):
        first = [result.orders[r].index(a) < result.orders[r].index(b) for r in common]
    return [by_a[r] for r in common], [by_b[r] for r in common], first


@cached
def speedup(result: Result, name: str, reference: str) -> Ratio:
    """time(reference) / time(name) over the rounds both ran: above 1 means ``name`` is faster."""
    ref, own, ref_first = paired_with_order(result, reference, name)
    return stats.checked_ratio(ref, own, ref_first)


@cached
def efficiency(result: Result, name: str) -> Ratio | None:
    """time(variant) / time(its compute-only bound): 1.00 = its data costs nothing."""
    bound = result.bound_of(name)
    if bound is None or not result[name].samples:
        return None
    own, bound_s, own_first = paired_with_order(result, name, bound)
    return stats.checked_ratio(own, bound_s, own_first)


def efficiencies(result: Result) -> dict[str, Ratio]:
    """Every measured variant that has a compute-only bound -> its efficiency."""
    found = {name: efficiency(result, name) for name in result.measured}
    return {n: e for n, e in found.items() if e is not None}


def shares(result: Result, name: str) -> dict[str, float]:
    """Share of the step in each part (sum over all timed steps / sum of the step times), in a
    fixed order: the workload's ``parts``, then the others as first seen."""
    m = result[name]
    total = sum(sum(t.steps) for t in m.samples)
    parts: dict[str, float] = {}
    for t in m.samples:
        for part, values in t.parts.items():
            parts[part] = parts.get(part, 0.0) + sum(values)
    order = m.parts
    return {p: parts[p] / total for p in [*order, *[q for q in parts if q not in order]]
            if p in parts and total > 0}


def labelled(shares_: dict[str, float]) -> bool:
    """Whether the step labels parts of its own (``data`` is the harness's label of fetch)."""
    return any(p != "data" for p in shares_)


def samples_per_batch(result: Result, name: str) -> tuple[float | None, str]:
    """How many samples one step consumes, and what a sample is (``tokens`` for a language model
    that says so): the workload's ``samples_per_batch``, else its ``batch_size``."""
    m = result[name]
    n = m.samples_per_batch or m.batch_size
    return (float(n) if n else None), m.sample_unit or "samples"


@cached
def throughput(result: Result, name: str) -> Ratio | None:
    """Samples per second with its 95% interval: samples per batch / the median step (the
    interval from the median step's), from the same samples as the step time."""
    n, _ = samples_per_batch(result, name)
    if not n:
        return None
    step = step_ci(result, name)
    low = n / step.high if step.has_interval else float("nan")
    high = n / step.low if step.has_interval else float("nan")
    return Ratio(n / step.value, low, high)


@cached
def step_ci(result: Result, name: str) -> Ratio:
    """The median step (seconds) with its 95% interval."""
    return stats.median_ci(samples(result, name))


def peak_mb(result: Result, name: str) -> float | None:
    """The peak of live bytes one step needed above what lived before it (MB), where it was
    measured."""
    found = result[name].footprint.breakdown
    return found.rise / 2**20 if found is not None and found.rise is not None else None


def gflop_per_step(result: Result, name: str) -> float | None:
    flops = result[name].footprint.flops_per_step
    return flops / 1e9 if flops is not None else None


def achieved_flops(result: Result, name: str) -> float | None:
    """The FLOP/s the median step reached (matmuls and convolutions)."""
    flops = result[name].footprint.flops_per_step
    return flops / step_seconds(result, name) if flops and result[name].samples else None


def mfu(result: Result, name: str) -> float | None:
    """Model FLOP utilization: the step's FLOPs / its median time / the machine's peak FLOP/s;
    None where either is unknown, or where the step beat the peak (see :func:`mfu_refused`)."""
    achieved, peak = achieved_flops(result, name), result.peak.get("flops")
    if not achieved or not peak or achieved > peak:
        return None
    return achieved / peak


def mfu_refused(result: Result, name: str) -> str:
    """Why no MFU is stated where a step beat the machine's measured peak ("" otherwise): a
    utilization above 100% is a wrong peak (or FLOPs counted that the step did not do), never
    a result."""
    achieved, peak = achieved_flops(result, name), result.peak.get("flops")
    if not achieved or not peak or achieved <= peak:
        return ""
    return (f"MFU not stated: the step's {achieved / 1e9:,.0f} GFLOP/s beat the machine's peak of "
            f"{peak / 1e9:,.0f} GFLOP/s ({result.peak.get('source', '')}), so the peak is wrong -- measured "
            "while the machine was busy -- or FLOPs were counted that the step did not do")


def epoch_estimate(result: Result, name: str) -> float | None:
    """Median seconds per step x batches per epoch (None when the workload does not say)."""
    batches = result[name].batches_per_epoch
    return step_seconds(result, name) * batches if batches else None


def epoch_measured(result: Result, name: str) -> list[float]:
    return [t.seconds for t in result[name].epochs]


@cached
def overhead(result: Result, name: str, tool: str) -> Ratio:
    """time under ``tool`` / time without, from windows alternated pairwise (pair ``i`` ran the
    plain window first when ``i`` is even: see bench.profile.passes)."""
    tt = result[name].profiles[tool]
    n = min(len(tt.tool), len(tt.plain))
    return stats.checked_ratio([t.per_step for t in tt.tool[:n]], [t.per_step for t in tt.plain[:n]],
                               [i % 2 == 1 for i in range(n)])


@cached
def observing(result: Result, name: str) -> Ratio | None:
    """What observing a script costs: its step with every part hook on / with the step-end clock
    alone, from windows alternated pairwise (None: no such windows)."""
    tt = result[name].profiles.get(UNHOOKED)
    if tt is None:
        return None
    n = min(len(tt.tool), len(tt.plain))
    return stats.checked_ratio([t.per_step for t in tt.plain[:n]], [t.per_step for t in tt.tool[:n]],
                               [i % 2 == 0 for i in range(n)])


def noise(result: Result) -> float:
    """The run's noise: the median over variants of the per-round IQR/median (NaN: none measured)."""
    spreads = [stats.relative_spread(samples(result, n)) for n in result.measured]
    return float(np.median(spreads)) if spreads else float("nan")


def resolution(result: Result) -> float:
    """The median relative half-width of the run's variant-to-variant intervals (vs the previous
    variant when they are ordered, else vs the baseline): differences much smaller were not resolved."""
    ratios = [r.vs_previous if result.ordered else r.speedup for r in rows(result)[1:]]
    widths = [r.half_width() for r in ratios if r is not None and r.has_interval and r.measurable]
    return float(np.median(widths)) if widths else float("nan")


@dataclass(frozen=True)
class Row:
    """One variant's line of the comparison."""

    variant: str
    median_ms: float
    speedup: Ratio  # vs the baseline
    vs_previous: Ratio | None  # vs the variant before it: only for ordered variants (None otherwise)
    verdict: str  # a Verdict of its speedup vs the baseline ("" for the baseline)
    verdict_vs_previous: str  # the same vs the previous variant ("" unless ordered)
    efficiency: Ratio | None  # time / its compute-only bound (None: no bound measured)


@cached
def rows(result: Result) -> list[Row]:
    names = result.measured
    if not names:
        return []
    base = names[0]
    out = []
    for i, name in enumerate(names):
        up = speedup(result, name, base)
        prev = speedup(result, name, names[i - 1]) if i and result.ordered else None
        out.append(Row(name, step_seconds(result, name) * 1e3, up, prev,
                       stats.speed_verdict(up) if i else "", stats.speed_verdict(prev) if prev else "",
                       efficiency(result, name)))
    return out


def fastest_group(result: Result) -> tuple[str, list[str]]:
    """The fastest variant, and the others not measurably slower than it (interval holds 1, or
    the ratio is not measurable on this run)."""
    names = result.measured
    best = min(names, key=lambda n: step_seconds(result, n))
    undecided = (stats.Verdict.UNCHANGED, stats.Verdict.NOISY)
    tied = [n for n in names if n != best and speedup(result, best, n).verdict in undecided]
    return best, tied


@dataclass(frozen=True)
class Change:
    """A variant against the one it changes one thing of (its ``reference``)."""

    variant: str
    reference: str
    speedup: Ratio  # time(reference) / time(variant)
    verdict: str  # a Verdict
    one_off_s: float  # its first step minus the reference's first step: compile, capture, start-up
    payoff_steps: float | None  # steps after which the one-off cost is repaid (None: never)
    added_s: stats.Ratio | None = None  # time(variant) - time(reference) per step: the speedup in ms


@cached
def changes(result: Result) -> list[Change]:
    out = []
    for name in result.measured:
        ref = result[name].reference
        if not ref or ref not in result.measured:
            continue
        up = speedup(result, name, ref)
        verdict = stats.speed_verdict(up)
        one_off = (result[name].first_step_s or 0.0) - (result[ref].first_step_s or 0.0)
        saving = step_seconds(result, ref) - step_seconds(result, name)
        payoff = (max(one_off, 0.0) / saving) if verdict == stats.Verdict.FASTER and saving > 0 else None
        ref_s, _ = paired(result, ref, name)
        added = added_per_step(up, stats.median(ref_s)) if up.measurable else None
        out.append(Change(name, ref, up, verdict, one_off, payoff, added))
    return out


def added_per_step(up: Ratio, reference_s: float) -> Ratio:
    """What a change adds to each step (seconds; negative: saves), read off its speedup and the
    reference's median step: ``reference_s * (1 / speedup - 1)``, the interval's ends mapped the
    same way. One statistic decides -- the speedup's paired bootstrap -- and this is the same
    interval in seconds, so it excludes 0 exactly when the speedup's excludes 1 (two separate
    bootstraps, of the ratio and of the differences, can disagree at the edge)."""
    def added(s: float) -> float:
        return reference_s * (1 / s - 1) if s else float("nan")

    if not up.has_interval:
        return Ratio(added(up.value), float("nan"), float("nan"), up.caveat)
    return Ratio(added(up.value), added(up.high), added(up.low), up.caveat)


def breakdown_mb(result: Result, name: str) -> dict[str, float] | None:
    """The live tensor MB at the step's peak by part (parameters, gradients, optimizer state,
    activations, other tensors, temporaries), in that order; None where not measured."""
    found = result[name].footprint.breakdown
    if found is None or not found.parts:  # none, or a run saved with its step's rise only
        return None
    from bench.measure.memory import MEMORY_PARTS

    return {p: found.parts.get(p, 0) / 2**20 for p in MEMORY_PARTS}


def column(part: str) -> str:
    """A part's name as a CSV column's: "optimizer state" -> "optimizer_state"."""
    return "".join(c if c.isalnum() else "_" for c in part).strip("_")
