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

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
RESAMPLES = 2000
MIN_SAMPLES = 5  # below this a bootstrap interval is too narrow to mean anything: none is given


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


@dataclass(frozen=True)
class Ratio:
    """median(num) / median(den) with its 95% bootstrap interval."""

    value: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """``above`` / ``below`` 1 when the interval excludes 1, else ``same``."""
        if self.low > 1:
            return "above"
        if self.high < 1:
            return "below"
        return "same"

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def ci(self, digits: int = 2) -> str:
        if not self.has_interval:
            return "too few rounds for an interval"
        return f"95% CI {self.low:.{digits}f}-{self.high:.{digits}f}"

    def text(self, digits: int = 2) -> str:
        return f"{self.value:.{digits}f} ({self.ci(digits)})"


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


def difference(num: Sequence[float], den: Sequence[float], *, seed: int = 0) -> Ratio:
    """The median of paired differences ``num - den`` (same rounds) with its 95% percentile-
    bootstrap interval, in the samples' unit; held in a :class:`Ratio` for its fields only
    (its ``verdict`` compares with 1 and does not apply)."""
    d = np.asarray(num, dtype=float) - np.asarray(den, dtype=float)
    value = float(np.median(d))
    if len(d) < MIN_SAMPLES:
        return Ratio(value, float("nan"), float("nan"))
    res = sps.bootstrap((d,), np.median, vectorized=True, n_resamples=RESAMPLES, method="percentile",
                        confidence_level=CONFIDENCE, rng=np.random.default_rng(seed))
    return Ratio(value, float(res.confidence_interval.low), float(res.confidence_interval.high))


def speed_verdict(speedup: Ratio) -> str:
    """For a speedup (old time / new time): ``faster``, ``slower`` or ``same`` (interval holds 1)."""
    return {"above": "faster", "below": "slower", "same": "same"}[speedup.verdict]
