"""The decision between a baseline's samples and a candidate's (``regress``, ``compare``,
``run --compare`` and ``run --try`` all use it).

A benchmark is ``slower`` only when its median ratio (candidate / baseline) exceeds
``1 + threshold`` **and** a one-sided Mann-Whitney U test says the candidate's samples are
larger with p < ``alpha`` **and** the 95% interval of the ratio lies above 1 -- above
``1 + threshold`` when either side's spread (IQR / median) exceeds ``max_spread``, so wide
noise needs a clear shift; ``faster`` mirrors that; ``noisy`` when there are too few samples
to reach ``alpha`` at all, or the spread is wide and no shift is clear; ``unchanged``
otherwise. All benchmarks of one comparison form one family: their p-values are
Holm-Bonferroni adjusted (``bench.regress.compare.compare_benchmarks``), so the chance of a
false ``slower`` anywhere stays below ``alpha``. The ratio comes with a 95% bootstrap
confidence interval. Deterministic counters (``*_per_step`` in extra_info) are compared
exactly: a slowdown with a jump in operator calls is explained, not guessed.

Anchors: asv continuous (Mann-Whitney U, p < 0.002, factor 1.1), Google Benchmark compare.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from bench.measure.stats import Verdict, ratio, relative_spread


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
    """The one outcome of "B against A" -- a benchmark under ``compare`` and ``regress``, two
    command lines under ``run --compare``: the medians, the ratio B/A with its 95% interval, the
    tests behind it, the timing's verdict, and where there are some, the exact counts and the
    verdict of both signals together (:func:`bench.regress.compare.finals`)."""

    name: str
    base_median: float
    cand_median: float
    ratio: float
    ci: tuple[float, float]
    p_slower: float  # one-sided U test (Holm-adjusted over the family where there is one; NaN: none)
    verdict: Verdict  # the timing's
    n_base: int
    n_cand: int
    counters: dict[str, tuple[float, float]] = field(default_factory=dict)  # changed only
    family: int = 1  # benchmarks compared together; p_slower is Holm-adjusted over them
    p_faster: float = float("nan")
    spread: bool = False  # either side's IQR/median above the rule's max_spread
    # the exact counts, where there are some: a bench.instructions.compare.InstructionComparison
    # (typed loosely: the rule sits below the instruction counting that fills it in)
    instructions: Any = None
    final: Verdict | None = None  # from both signals (None: not judged together yet)
    how: str = ""  # how the final verdict was reached, when not by the timing alone

    @property
    def timed(self) -> bool:
        return self.n_base > 0 and self.n_cand > 0

    @property
    def regression(self) -> bool:
        return (self.final or self.verdict) == Verdict.SLOWER

    @property
    def unresolved(self) -> bool:
        return (self.final or self.verdict) == Verdict.NOISY


def ratio_ci(base: Sequence[float], cand: Sequence[float], *, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of median(cand) / median(base) (independent samples;
    NaN with too few of them): the one bootstrap of :func:`bench.measure.stats.ratio`."""
    r = ratio(cand, base, paired=False, seed=seed)
    return r.low, r.high


def min_attainable_p(n1: int, n2: int) -> float:
    """The smallest one-sided U-test p-value n1 vs n2 samples can give: 1 / C(n1 + n2, n1)."""
    return 1 / math.comb(n1 + n2, n1)


def min_samples_for(alpha: float, family: int = 1) -> int:
    """The fewest samples a side with which the one-sided U test can reach ``alpha`` after Holm
    over ``family`` benchmarks (its smallest p, 1/C(2n, n), times the family size)."""
    n = 2
    while family * min_attainable_p(n, n) >= alpha and n < 1000:
        n += 1
    return n


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and does not count in the family).

    Sorted ascending, the i-th smallest of m is multiplied by (m - i), made monotone, capped at
    1; rejecting where the adjusted p < alpha keeps the chance of any false alarm in the family
    at most alpha (the family-wise error), with more power than plain Bonferroni.
    """
    index = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(index)
    adjusted = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(index, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def evidence(base: Sequence[float], cand: Sequence[float], rule: Rule, family: int = 1,
              name: str = "") -> Comparison:
    """The timing's numbers, before the verdict (unadjusted p-values)."""
    ratio = float(np.median(cand) / np.median(base))
    ci = ratio_ci(base, cand)
    spread = max(relative_spread(base), relative_spread(cand)) > rule.max_spread
    p_slower = p_faster = float("nan")
    # Too few samples to reach alpha at all -- in a family of this size, after Holm: no test.
    if not (min(len(base), len(cand)) < rule.min_samples
            or family * min_attainable_p(len(base), len(cand)) >= rule.alpha):
        p_slower = float(sps.mannwhitneyu(cand, base, alternative="greater").pvalue)
        p_faster = float(sps.mannwhitneyu(cand, base, alternative="less").pvalue)
    return Comparison(name, float(np.median(base)), float(np.median(cand)), ratio, ci, p_slower,
                      Verdict.NOISY, len(base), len(cand), family=family, p_faster=p_faster, spread=spread)


def verdict_of(ev: Comparison, rule: Rule) -> Verdict:
    if math.isnan(ev.p_slower):
        return Verdict.NOISY
    # With a wide spread, ask more: the whole interval beyond the threshold, not just beyond 1.
    slower_bound = 1 + rule.threshold if ev.spread else 1.0
    if ev.ratio > 1 + rule.threshold and ev.p_slower < rule.alpha and ev.ci[0] > slower_bound:
        return Verdict.SLOWER
    if ev.ratio < 1 / (1 + rule.threshold) and ev.p_faster < rule.alpha and ev.ci[1] < 1 / slower_bound:
        return Verdict.FASTER
    return Verdict.NOISY if ev.spread else Verdict.UNCHANGED


def within(c: Comparison, rule: Rule) -> bool:
    """Does the ratio's whole interval lie within the threshold (+-``rule.threshold``)?"""
    return all(math.isfinite(x) for x in c.ci) and \
        1 / (1 + rule.threshold) <= c.ci[0] and c.ci[1] <= 1 + rule.threshold


def advised(verdict: Verdict, c: Comparison, rule: Rule) -> Verdict:
    """The verdict where a report *advises* (``run --compare``, ``--try``): "unchanged" only
    when the interval lies within the threshold; an interval that reaches beyond it is "not
    measurable" (``noisy``). The regression gate keeps the rule's verdict (and its exit codes)
    and words such a pass "no regression detected" (:func:`gate_word`)."""
    return Verdict.NOISY if verdict == Verdict.UNCHANGED and not within(c, rule) else verdict


def gate_word(c: Comparison, rule: Rule = Rule()) -> str:
    """How the gate names a verdict: a pass whose interval reaches beyond the threshold is "no
    regression detected", not "unchanged" (nothing says the change did nothing)."""
    v = c.final or c.verdict
    if v == Verdict.UNCHANGED and c.timed and not within(c, rule) and not c.how:
        return "no regression detected"
    return v.upper() if v == Verdict.SLOWER else str(v)


def decide(base: Sequence[float], cand: Sequence[float], rule: Rule = Rule(), name: str = "",
           advice: bool = False) -> Comparison:
    """One benchmark (or one pair of command lines) alone, no family: its Comparison.
    ``advice``: the verdict as a report that advises says it (:func:`advised`)."""
    ev = evidence(base, cand, rule, name=name)
    verdict = verdict_of(ev, rule)
    return replace(ev, verdict=advised(verdict, ev, rule) if advice else verdict)
