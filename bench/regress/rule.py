"""The regression decision between a baseline and a candidate benchmark run.

A benchmark is ``slower`` only when its median ratio (candidate / baseline) exceeds
``1 + threshold`` **and** a one-sided Mann-Whitney U test says the candidate's samples are
larger with p < ``alpha`` **and** the 95% interval of the ratio lies above 1 -- above
``1 + threshold`` when either side's spread (IQR / median) exceeds ``max_spread``, so wide
noise needs a clear shift; ``faster`` mirrors that; ``noisy`` when there are too few samples
to reach ``alpha`` at all, or the spread is wide and no shift is clear; ``unchanged``
otherwise. The ratio comes with a 95% bootstrap confidence interval. Deterministic counters
(``*_per_step`` in extra_info) are compared exactly: a slowdown with a jump in operator calls
is explained, not guessed.

Anchors: asv continuous (Mann-Whitney U, p < 0.002, factor 1.1), Google Benchmark compare.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from bench.measure.stats import relative_spread
from bench.regress.benchjson import Benchmark

VERDICTS = ("slower", "faster", "unchanged", "noisy")


@dataclass(frozen=True)
class Rule:
    threshold: float = 0.05  # smallest slowdown worth an alert: 5%
    alpha: float = 0.01  # significance of the one-sided U test
    min_samples: int = 5  # per side; below it the test cannot reach alpha=0.01 anyway
    max_spread: float = 0.25  # IQR / median above this on either side -> noisy

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 10:
            raise ValueError(f"threshold must be a fraction like 0.05, got {self.threshold}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.max_spread <= 0:
            raise ValueError(f"max_spread must be positive, got {self.max_spread}")
        if self.min_samples < 2:
            raise ValueError(f"min_samples must be at least 2, got {self.min_samples}")


@dataclass(frozen=True)
class Comparison:
    name: str
    base_median: float
    cand_median: float
    ratio: float
    ci: tuple[float, float]
    p_slower: float
    verdict: str
    n_base: int
    n_cand: int
    counters: dict[str, tuple[float, float]] = field(default_factory=dict)  # changed only


def ratio_ci(base: Sequence[float], cand: Sequence[float], *, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of median(cand) / median(base)."""
    if len(base) < 2 or len(cand) < 2:
        return float("nan"), float("nan")

    def statistic(c, b, axis):
        return np.median(c, axis=axis) / np.median(b, axis=axis)

    res = sps.bootstrap((np.asarray(cand), np.asarray(base)), statistic, vectorized=True,
                        n_resamples=2000, method="percentile", confidence_level=0.95,
                        rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def min_attainable_p(n1: int, n2: int) -> float:
    """The smallest one-sided U-test p-value n1 vs n2 samples can give: 1 / C(n1 + n2, n1)."""
    return 1 / math.comb(n1 + n2, n1)


def decide(base: Sequence[float], cand: Sequence[float], rule: Rule = Rule()
           ) -> tuple[str, float, float, tuple[float, float]]:
    """(verdict, ratio of medians, one-sided p that the candidate is slower, 95% CI of the ratio)."""
    ratio = float(np.median(cand) / np.median(base))
    ci = ratio_ci(base, cand)
    if min(len(base), len(cand)) < rule.min_samples or min_attainable_p(len(base), len(cand)) >= rule.alpha:
        return "noisy", ratio, float("nan"), ci
    p_slower = float(sps.mannwhitneyu(cand, base, alternative="greater").pvalue)
    p_faster = float(sps.mannwhitneyu(cand, base, alternative="less").pvalue)
    spread = max(relative_spread(base), relative_spread(cand)) > rule.max_spread
    # With a wide spread, ask more: the whole interval beyond the threshold, not just beyond 1.
    slower_bound = 1 + rule.threshold if spread else 1.0
    if ratio > 1 + rule.threshold and p_slower < rule.alpha and ci[0] > slower_bound:
        return "slower", ratio, p_slower, ci
    if ratio < 1 / (1 + rule.threshold) and p_faster < rule.alpha and ci[1] < 1 / slower_bound:
        return "faster", ratio, p_slower, ci
    return ("noisy" if spread else "unchanged"), ratio, p_slower, ci


def _counter_changes(base: Benchmark, cand: Benchmark) -> dict[str, tuple[float, float]]:
    keys = sorted(k for k in set(base.extra_info) & set(cand.extra_info) if k.endswith("_per_step"))
    return {k: (base.extra_info[k], cand.extra_info[k]) for k in keys
            if base.extra_info[k] != cand.extra_info[k]}


def compare(base: list[Benchmark], cand: list[Benchmark], rule: Rule = Rule()
            ) -> tuple[list[Comparison], list[str], list[str]]:
    """Compare benchmarks by name -> (comparisons, only in base, only in candidate)."""
    b_by, c_by = {b.name: b for b in base}, {c.name: c for c in cand}
    results = []
    for name in [n for n in b_by if n in c_by]:
        b, c = b_by[name], c_by[name]
        verdict, ratio, p, ci = decide(b.data, c.data, rule)
        results.append(Comparison(name=name, base_median=b.median, cand_median=c.median,
                                  ratio=ratio, ci=ci, p_slower=p,
                                  verdict=verdict, n_base=len(b.data), n_cand=len(c.data),
                                  counters=_counter_changes(b, c)))
    only_base = [n for n in b_by if n not in c_by]
    only_cand = [n for n in c_by if n not in b_by]
    return results, only_base, only_cand
