"""Statistics of raw samples: computed on demand from the stored times, never stored."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
