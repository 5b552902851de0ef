"""Across the ranks of one run: the **skew** of each rank's own work against the median rank's,
and the **straggler** it points to, with the part that explains the gap.

In synchronous data-parallel training every rank's step takes as long as the slowest one's: a
fast rank waits inside ``backward``, where DDP's gradient all-reduce runs. A rank's *own work*
is therefore its step without ``backward``; a straggler is a rank whose own work is measurably
longer (the 95% interval of the paired ratio above 1, its assumptions checked) **and** whose
extra work costs the others a real share of the step in waiting (at least ``MATERIAL`` of the
median step). Two ranks sharing a small machine differ by a few percent in any run; that is a
measurable skew, said as such, not a straggler.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.measure import stats
from bench.measure.clock import Timing
from bench.measure.result import Result

PARTS = ("data", "copy", "forward", "backward", "optimizer", "other")
MATERIAL = 0.10  # a straggler's extra own work, as a share of the median step


@dataclass(frozen=True)
class Straggler:
    """The rank whose own work (the step without its backward, where the others wait for it in
    the gradient all-reduce) is measurably longer than the median rank's."""

    rank: str
    reference: str  # the median rank
    skew: stats.Ratio  # busy(rank) / busy(reference), paired by step
    part: str  # the part that explains most of the gap
    explains: float  # that part's share of the gap
    waits_in: str  # where the other ranks wait for it
    gap_share: float = 0.0  # the extra own work per step / the median step
    named: bool = True  # False: measurable but below MATERIAL -- a skew, not a straggler


def busy(t: Timing) -> float:
    """A step's own work: everything but backward, where a fast rank waits for the slow one's
    gradients (DDP's all-reduce runs inside backward)."""
    return t.seconds - sum(t.parts.get("backward", [0.0]))


def stragglers(result: Result) -> tuple[list[Straggler], dict[str, stats.Ratio]]:
    """The skew of each rank against the median rank (paired by step index), and the ranks whose
    skew is measurable (its 95% interval above 1, what the interval assumes checked): each one
    ``named`` a straggler when its extra work is at least MATERIAL of the step."""
    names = [n for n in result.measured if n.startswith("rank")]
    if len(names) < 2:
        return [], {}
    by_step = {n: {t.round: t for t in result[n].samples} for n in names}
    common = sorted(set.intersection(*(set(d) for d in by_step.values())))
    medians = {n: float(np.median([busy(by_step[n][r]) for r in common])) for n in names}
    reference = sorted(names, key=lambda n: medians[n])[(len(names) - 1) // 2]
    skews, found = {}, []
    for name in names:
        if name == reference:
            continue
        own = [busy(by_step[name][r]) for r in common]
        ref = [busy(by_step[reference][r]) for r in common]
        skew = stats.checked_ratio(own, ref, None)
        skews[name] = skew
        if skew.verdict != stats.Verdict.SLOWER:  # a ratio of times: its interval above 1
            continue
        gaps = {p: float(np.median([sum(by_step[name][r].parts.get(p, [0.0]))
                                    - sum(by_step[reference][r].parts.get(p, [0.0])) for r in common]))
                for p in PARTS if p != "backward"}
        total = sum(max(g, 0.0) for g in gaps.values())
        part = max(gaps, key=lambda p: gaps[p])
        step = float(np.median([by_step[name][r].seconds for r in common]))
        gap = medians[name] - medians[reference]
        share = gap / step if step > 0 else 0.0
        found.append(Straggler(name, reference, skew, part, gaps[part] / total if total > 0 else 0.0,
                               "backward", share, share >= MATERIAL))
    return found, skews
