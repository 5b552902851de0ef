"""The ranks' clocks aligned on the moments they share.

Each rank keeps its measured steps on its own host's wall clock (its ``timeline``). The wall
clocks of two hosts differ by hundreds of microseconds or more -- more than a step's parts --
so the ranks' timelines cannot be laid side by side as they are. But every rank leaves a
blocking collective at the same moment (and, under DDP, ``backward()`` returns once the
gradient all-reduce is complete on every rank): those **sync points** are where the clocks are
aligned. A rank's offset is the median, over the sync points every rank has (matched by step
and order within the step), of the reference rank's time minus its own; the **residual** of a
point is what remains after the offset. The largest residual is the error stated: on one host
(one clock) it is the natural spread of a collective's ends, on several it also holds their
clocks' drift over the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.measure.derive import cached
from bench.measure.result import Result


@dataclass(frozen=True)
class Alignment:
    reference: str  # the rank whose clock the others are put on (the lowest)
    offsets: dict[str, float]  # seconds to add to a rank's wall-clock times
    points: int  # sync points every rank has
    typical_s: float  # the median residual over every rank and point
    p95_s: float  # 95% of the points are within it
    largest_s: float  # the largest: the stated error
    basis: str  # what the sync points are

    def text(self) -> str:
        return (f"the ranks' clocks aligned on {self.points} {self.basis} ends (every rank leaves them "
                f"together): residual {_us(self.typical_s)} typical, 95% within {_us(self.p95_s)}, "
                f"{_us(self.largest_s)} at most")


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs" if seconds < 1e-2 else f"{seconds * 1e3:,.1f} ms"


def _timelines(result: Result) -> dict[str, dict]:
    out = {}
    for name in result.measured:
        p = result[name].process
        if name.startswith("rank") and p is not None and p.timeline.get("syncs"):
            out[name] = p.timeline
    return out


@cached  # every renderer asks
def align(result: Result) -> Alignment | None:
    """The offsets that put every rank on the reference rank's clock; None for fewer than two
    ranks with sync points, or no sync point they all have."""
    timelines = _timelines(result)
    if len(timelines) < 2 or len(timelines) < len([n for n in result.measured if n.startswith("rank")]):
        return None
    ends = {n: {(int(s), int(k)): float(t) for s, k, t in tl["syncs"]} for n, tl in timelines.items()}
    common = sorted(set.intersection(*(set(e) for e in ends.values())))
    if not common:
        return None
    reference = min(timelines, key=lambda n: int(n[4:]) if n[4:].isdigit() else 0)
    ref = ends[reference]
    offsets, residuals = {}, []
    for name, mine in ends.items():
        # origins first, then the small times: a wall-clock epoch in seconds keeps only ~0.2 µs
        base = float(timelines[reference]["origin"]) - float(timelines[name]["origin"])
        deltas = np.array([ref[key] - mine[key] for key in common])
        median = float(np.median(deltas))
        offsets[name] = base + median
        if name != reference:
            residuals.extend(np.abs(deltas - median).tolist())
    any_collective = any(label.startswith("collective:") for tl in timelines.values()
                         for _, label, _, _ in tl.get("spans", []))
    basis = "collective" if any_collective else "backward (DDP's all-reduce)"
    return Alignment(reference, offsets, len(common), float(np.median(residuals)),
                     float(np.percentile(residuals, 95)), float(max(residuals)), basis)
