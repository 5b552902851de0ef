"""Across the ranks of one run: the **skew** of each rank's own work against the median rank's,
and the **straggler** it points to, with the part that explains the gap.

In synchronous data-parallel training every rank's step takes as long as the slowest one's: a
fast rank waits inside ``backward``, where DDP's gradient all-reduce runs. A rank's *own work*
is therefore its step without its **wait**: its all-reduce time by DDP's own timing less the
least of any rank's (the rank the others wait for waits least), so extra work inside
``backward`` is seen too -- a mean over the window, so a rank's backward counts as its median
less that wait in every step (:class:`Waits`). A script that calls the collectives by hand (no
DDP) waits inside them: its wait is, per step, its time in the blocking collectives less the
least of any rank's in that step. Where neither is known, own work is the step without
``backward``. A straggler is a rank whose own work is measurably longer (the 95% interval of
the paired ratio above 1, its assumptions checked) **and** whose extra work costs the others a
real share of the step in waiting (at least ``MATERIAL`` of the median step). Two ranks sharing
a small machine differ by a few percent in any run; that is a measurable skew, said as such,
not a straggler.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.defaults import STEP_PARTS
from bench.measure import stats
from bench.measure.clock import Timing
from bench.measure.derive import cached
from bench.measure.result import Result

MATERIAL = 0.10  # a straggler's extra own work, as a share of the median step


@dataclass(frozen=True)
class Straggler:
    """The rank whose own work (the step without its backward, where the others wait for it in
    the gradient all-reduce) is measurably longer than the median rank's."""

    rank: str
    reference: str  # the median rank
    skew: stats.Ratio  # own work of rank / of the reference, paired by step
    part: str  # the part that explains most of the gap
    explains: float  # that part's share of the gap
    waits_in: str  # where the other ranks wait for it
    gap_share: float = 0.0  # the extra own work per step / the median step
    named: bool = True  # False: measurable but below MATERIAL -- a skew, not a straggler


@dataclass(frozen=True)
class Waits:
    """Each rank's wait for the others, where it is known (seconds).

    ``ddp``: in DDP's gradient all-reduce, a rank's mean all-reduce time by DDP's own timing
    less the least of any rank's -- the rank the others wait for waits least, so its all-reduce
    is the communication alone. DDP gives that wait as a mean over the window, not per step, so
    a rank's backward counts as its own work at ``backward``: its median backward less its mean
    wait, the same every step. (Subtracting the mean wait from each step instead would leave
    every step's wait's jitter -- the slow rank's data stalls, the scheduler -- in the fast
    rank's own work: on a loaded 2-core machine that spread the paired ratios past what an
    interval can mean, and a 20 ms straggler went unnamed 2 runs of 5.) ``collective``: in the
    blocking collectives the script calls by hand (the part ``collective``), per step, a rank's
    time there less the least of any rank's in that step (all ranks leave a collective together:
    the last to arrive spends least in it)."""

    ddp: dict[str, float] | None
    backward: dict[str, float] | None  # with ddp: each rank's backward as own work, per step
    collective: dict[str, dict[int, float]] | None

    @property
    def where(self) -> str:
        return "backward" if self.ddp is not None else "collective"


def _backward(t: Timing) -> float:
    return sum(t.parts.get("backward", [0.0]))


@cached  # every rank's own work asks for it: once per Result
def waits(result: Result) -> Waits | None:
    """The ranks' waits (None with neither DDP's timing on every rank nor hand-called collectives
    on every rank: then a rank's backward stands in for its wait)."""
    names = [n for n in result.measured if n.startswith("rank")]
    times = {n: result[n].process.allreduce_ms if result[n].process else None for n in names}
    ddp = backward = None
    if all(times.values()):
        least = min(t for t in times.values() if t)
        ddp = {n: (float(t or 0.0) - least) / 1e3 for n, t in times.items()}
        backward = {n: max(float(np.median([_backward(t) for t in result[n].samples])) - ddp[n], 0.0)
                    for n in names}
    spent = {n: {t.round: sum(t.parts.get("collective", [0.0])) for t in result[n].samples} for n in names}
    collective = None
    if all(any(v > 0 for v in by_step.values()) for by_step in spent.values()):
        steps = set.intersection(*(set(by_step) for by_step in spent.values()))
        collective = {n: {r: spent[n][r] - min(spent[m][r] for m in names) for r in steps} for n in names}
    return Waits(ddp, backward, collective) if ddp is not None or collective is not None else None


def busy(t: Timing, wait: Waits | None, name: str) -> float:
    """A step's own work: the step less its waits -- its backward counted as its own work under
    DDP (see :class:`Waits`), less its wait in the collectives called by hand -- or, where no
    wait is known, the step less its backward (DDP's all-reduce runs inside backward, so a fast
    rank's wait is there -- and so is a slow backward, which that rule cannot see)."""
    if wait is None:
        return t.seconds - _backward(t)
    own = t.seconds
    if wait.backward is not None:
        own += wait.backward[name] - _backward(t)
    if wait.collective is not None:
        own -= wait.collective[name].get(t.round, 0.0)
    return max(own, 0.0)


def _part(t: Timing, part: str, wait: Waits | None, name: str) -> float:
    """One part of a step as the rank's own work: backward as in :class:`Waits`, the
    collectives less the wait in them."""
    if wait is not None and part == "backward" and wait.backward is not None:
        return wait.backward[name]
    value = sum(t.parts.get(part, [0.0]))
    if wait is not None and part == "collective" and wait.collective is not None:
        return max(value - wait.collective[name].get(t.round, 0.0), 0.0)
    return value


def own_work(result: Result, name: str) -> float:
    """A rank's median own work per step (seconds)."""
    return float(np.median([busy(t, waits(result), name) for t in result[name].samples]))


@cached  # the reports ask for it in every renderer: one bootstrap per rank, once
def stragglers(result: Result) -> tuple[list[Straggler], dict[str, stats.Ratio]]:
    """The skew of each rank against the median rank (paired by step index), and the ranks whose
    skew is measurable (its 95% interval above 1, what the interval assumes checked): each one
    ``named`` a straggler when its extra work is at least MATERIAL of the step."""
    names = [n for n in result.measured if n.startswith("rank")]
    if len(names) < 2:
        return [], {}
    wait = waits(result)
    by_step = {n: {t.round: t for t in result[n].samples} for n in names}
    common = sorted(set.intersection(*(set(d) for d in by_step.values())))
    medians = {n: float(np.median([busy(by_step[n][r], wait, n) for r in common])) for n in names}
    reference = sorted(names, key=lambda n: medians[n])[(len(names) - 1) // 2]
    skews, found = {}, []
    for name in names:
        if name == reference:
            continue
        own = [busy(by_step[name][r], wait, name) for r in common]
        ref = [busy(by_step[reference][r], wait, reference) for r in common]
        skew = stats.checked_ratio(own, ref, None)
        skews[name] = skew
        if skew.verdict != stats.Verdict.SLOWER:  # a ratio of times: its interval above 1
            continue
        parts = [p for p in STEP_PARTS if p != "backward" or wait is not None]
        gaps = {p: float(np.median([_part(by_step[name][r], p, wait, name)
                                    - _part(by_step[reference][r], p, wait, reference) for r in common]))
                for p in parts}
        total = sum(max(g, 0.0) for g in gaps.values())
        part = max(gaps, key=lambda p: gaps[p])
        step = float(np.median([by_step[name][r].seconds for r in common]))
        gap = medians[name] - medians[reference]
        share = gap / step if step > 0 else 0.0
        found.append(Straggler(name, reference, skew, part, gaps[part] / total if total > 0 else 0.0,
                               wait.where if wait is not None else "backward", share, share >= MATERIAL))
    return found, skews
