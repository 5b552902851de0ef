"""Statistics of raw samples, computed when asked and never stored in their place.

Samples are per-round values (seconds per step of one round). Rounds of different variants
measured in the same window are *paired*: round ``i`` of A and round ``i`` of B ran next to
each other and share the machine's state then, so their ratio intervals resample rounds as
pairs (scipy's paired bootstrap), which removes the drift they share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
RESAMPLES = 2000
MIN_SAMPLES = 5  # below this a bootstrap interval is too narrow to mean anything: none is given
# The smallest change worth a word: a ratio whose whole interval lies within +-5% is "unchanged";
# one whose interval reaches beyond it without excluding 1 is "not measurable", never "unchanged".
THRESHOLD = 0.05
MIN_BLOCKS = 3  # independent repetitions needed for an interval across them


def median(samples: Sequence[float]) -> float:
    return float(np.median(samples))


def iqr(samples: Sequence[float]) -> float:
    """Inter-quartile range: the spread of the middle half, robust to a few outliers."""
    q1, q3 = np.percentile(samples, [25, 75])
    return float(q3 - q1)


def relative_spread(samples: Sequence[float]) -> float:
    """IQR / median; above ~0.1 a figure is noisy and should be read with care."""
    m = median(samples)
    return iqr(samples) / m if m else float("inf")


class Verdict(StrEnum):
    """The one vocabulary of every comparison here -- variants, profilers' overheads, a change
    under `regress` or `run --compare`, instruction counts. ``noisy``: no verdict, because the
    samples spread too much or broke what the interval assumes ("not measurable on this run")."""

    SLOWER = "slower"
    FASTER = "faster"
    UNCHANGED = "unchanged"
    NOISY = "noisy"


@dataclass(frozen=True)
class Ratio:
    """median(num) / median(den) with its 95% bootstrap interval.

    ``caveat`` (not empty) says why the interval cannot be trusted on this run -- the paired
    rounds broke what the bootstrap assumes (see :func:`pair_problems`): the ratio is then
    "not measurable", never a finding.
    """

    value: float
    low: float
    high: float
    caveat: str = ""

    @property
    def measurable(self) -> bool:
        return not self.caveat

    @property
    def verdict(self) -> Verdict:
        """For a ratio of *times* (new / reference), by :func:`band_verdict`; ``noisy`` too when
        there is no interval or its assumptions failed on this run. A speedup (reference / new)
        reads :func:`speed_verdict`."""
        if self.caveat or not self.has_interval:
            return Verdict.NOISY
        return band_verdict(self.low, self.high)

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def ci(self, digits: int = 2) -> str:
        if self.caveat:
            return f"not measurable on this run: {self.caveat}"
        if not self.has_interval:
            return "too few rounds for an interval"
        return f"95% CI {self.low:.{digits}f}-{self.high:.{digits}f}"

    def text(self, digits: int = 2) -> str:
        if self.caveat:
            return self.ci(digits)
        return f"{self.value:.{digits}f} ({self.ci(digits)})"

    def half_width(self) -> float:
        """The interval's half-width relative to the value (NaN without an interval)."""
        return (self.high - self.low) / 2 / self.value if self.has_interval and self.value else float("nan")


def band_verdict(low: float, high: float, threshold: float = THRESHOLD) -> Verdict:
    """The verdict of a ratio's 95% interval [low, high] (symmetric in the ratio's direction):
    ``unchanged`` when it lies within 1/(1+threshold) .. 1+threshold -- whatever it says about 1,
    the change is too small to matter; else ``slower`` (``faster``) when it lies above (below) 1;
    else ``noisy``: it holds 1 *and* reaches beyond the threshold, so the run cannot tell a
    change that matters from none ("not measurable"). A ratio of 1.02 (0.90-1.15) is therefore
    never "unchanged"."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return Verdict.NOISY
    if 1 / (1 + threshold) <= low and high <= 1 + threshold:
        return Verdict.UNCHANGED
    if low > 1:
        return Verdict.SLOWER
    if high < 1:
        return Verdict.FASTER
    return Verdict.NOISY


def across_blocks(values: Sequence[float], confidence: float = CONFIDENCE) -> Ratio:
    """A ratio and its interval from independent repetitions (blocks in time, processes), each
    already a ratio: the geometric mean, with Student's t interval on the logs.

    Why not the pooled pairs: neighbouring steps share the machine's state, so each block's
    ratio is precise, but the ratio itself moves with the state (fused Adam: 1.04 in one block,
    1.18 in another, each +-1%). An interval from all pairs pooled claims the blocks' precision
    for a value the next block contradicts; the spread *between* blocks is the honest error.
    Fewer than MIN_BLOCKS: no interval."""
    logs = np.log(np.asarray(values, dtype=float))
    n = len(logs)
    if n == 0:
        return Ratio(float("nan"), float("nan"), float("nan"))
    centre = float(np.mean(logs))
    if n < MIN_BLOCKS:
        return Ratio(math.exp(centre), float("nan"), float("nan"))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * np.std(logs, ddof=1) / math.sqrt(n))
    return Ratio(math.exp(centre), math.exp(centre - half), math.exp(centre + half))


def ratio(num: Sequence[float], den: Sequence[float], *, paired: bool = True, seed: int = 0) -> Ratio:
    """median(num) / median(den) and its 95% percentile-bootstrap interval.

    ``paired``: the two lists are rounds measured side by side (equal length); pairs are
    resampled together. Fewer than MIN_SAMPLES a side: no interval (too few to
    resample meaningfully): the interval is NaN and the verdict ``same``.
    """
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    value = float(np.median(a) / np.median(b))
    if paired and len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    if min(len(a), len(b)) < MIN_SAMPLES:
        return Ratio(value, float("nan"), float("nan"))

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(x, axis=axis) / np.median(y, axis=axis)

    res = sps.bootstrap((a, b), statistic, paired=paired, vectorized=True, n_resamples=RESAMPLES,
                        method="percentile", confidence_level=CONFIDENCE,
                        rng=np.random.default_rng(seed))
    return Ratio(value, float(res.confidence_interval.low), float(res.confidence_interval.high))


def median_ci(samples: Sequence[float], *, seed: int = 0) -> Ratio:
    """The median of ``samples`` with its 95% percentile-bootstrap interval (in their unit; held in
    a :class:`Ratio` for its fields only)."""
    x = np.asarray(samples, dtype=float)
    value = float(np.median(x))
    if len(x) < MIN_SAMPLES:
        return Ratio(value, float("nan"), float("nan"))
    res = sps.bootstrap((x,), np.median, vectorized=True, n_resamples=RESAMPLES, method="percentile",
                        confidence_level=CONFIDENCE, rng=np.random.default_rng(seed))
    return Ratio(value, float(res.confidence_interval.low), float(res.confidence_interval.high))


def speed_verdict(speedup: Ratio) -> Verdict:
    """For a speedup (old time / new time), whose interval above 1 means ``faster``."""
    flip = {Verdict.SLOWER: Verdict.FASTER, Verdict.FASTER: Verdict.SLOWER}
    return flip.get(speedup.verdict, speedup.verdict)


# What the paired bootstrap assumes, and the limits past which a run breaks it. The tests are
# strict (p < ASSUMPTION_ALPHA) and an effect must also be large next to the interval itself
# (EFFECT_FACTOR x its half-width, and at least MIN_EFFECT), so that ordinary noise, which the
# interval already covers, never makes a run "not measurable".
ASSUMPTION_ALPHA = 0.001
EFFECT_FACTOR = 2.0
MIN_EFFECT = 0.05
MAX_PAIR_SPREAD = 0.5  # IQR/median of the per-round ratios above this: the pairs disagree too much


def pair_problems(num: Sequence[float], den: Sequence[float], num_first: Sequence[bool] | None,
                  half_width: float) -> str:
    """Why the paired rounds of ``num`` and ``den`` do not support an interval ("" when they do).

    The percentile bootstrap over pairs treats the rounds' ratios as exchangeable draws of one
    ratio. Three things break that on a busy machine, each checked here:

    - an **order effect**: the variant visited first in a round is systematically slower (or
      faster) -- e.g. it pays for the caches the other one left cold. ``num_first[i]`` says
      whether ``num`` ran before ``den`` in pair ``i``; the ratios of the two orders are
      compared with a two-sided Mann-Whitney U test.
    - a **trend**: the ratio itself drifts over the rounds (the machine's speed changed for one
      variant more than the other); Kendall's tau against the round index, the size of the
      change from Theil-Sen's slope.
    - a **spread** so wide (IQR/median of the ratios above MAX_PAIR_SPREAD, and above the ratio's
      own distance from 1) that the median of the pairs says little.

    Each problem counts only when it is large next to the interval (EFFECT_FACTOR x its
    half-width, at least MIN_EFFECT) and next to the ratio's distance from 1: it must be able to
    change what the report says.
    """
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    n = len(a)
    if n < 2 * MIN_SAMPLES:
        return ""
    logs = np.log(a / b)
    # A problem matters when it could change what is said: large next to the interval, and next
    # to the ratio's own distance from 1 (a 20% drift does not blur a rank that is 7x slower).
    distance = abs(math.expm1(abs(float(np.median(logs)))))
    bar = max(EFFECT_FACTOR * (half_width if math.isfinite(half_width) else 0.0), MIN_EFFECT, distance / 2)
    if num_first is not None:
        first = np.asarray(num_first, dtype=bool)
        x, y = logs[first], logs[~first]
        if min(len(x), len(y)) >= MIN_SAMPLES:
            p = sps.mannwhitneyu(x, y, alternative="two-sided").pvalue
            effect = math.expm1(abs(float(np.median(x) - np.median(y))))
            if p < ASSUMPTION_ALPHA and effect > bar:
                return (f"the variant visited first in a round ran {effect:.0%} differently from when it "
                        f"ran second (order effect, Mann-Whitney p={p:.1g}); re-run on a quieter machine "
                        "or with more --steps per round")
    tau = sps.kendalltau(np.arange(n), logs)
    if tau.pvalue < ASSUMPTION_ALPHA:
        slope = sps.theilslopes(logs).slope
        change = math.expm1(abs(float(slope)) * (n - 1))
        if change > bar:
            return (f"the machine's speed changed inside the rounds: the ratio drifted by {change:.0%} "
                    f"from the first round to the last (Kendall p={tau.pvalue:.1g}); re-run on a "
                    "quieter machine")
    ratios = a / b
    spread = relative_spread(ratios)
    if spread > max(MAX_PAIR_SPREAD, distance):
        return (f"the paired rounds' ratios spread by {spread:.0%} (IQR/median), too wide for an "
                "interval to mean anything; re-run on a quieter machine or with more rounds")
    return ""


def checked_ratio(num: Sequence[float], den: Sequence[float], num_first: Sequence[bool] | None,
                  *, seed: int = 0) -> Ratio:
    """:func:`ratio` of paired rounds, with :func:`pair_problems` checked: a run that broke the
    interval's assumptions gives a Ratio whose ``caveat`` says how."""
    r = ratio(num, den, paired=True, seed=seed)
    problem = pair_problems(num, den, num_first, r.half_width())
    return Ratio(r.value, r.low, r.high, problem) if problem else r
