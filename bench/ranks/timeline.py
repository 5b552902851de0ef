"""The measured steps of one process on its host's wall clock: each step's span, its parts'
spans and its **sync points** -- the moments every rank leaves together (the end of a blocking
``torch.distributed`` collective; under DistributedDataParallel, the end of ``backward()``,
which returns once the gradient all-reduce is complete). The ranks' timelines are aligned on
those points (:mod:`bench.ranks.align`) and drawn as one trace (:mod:`bench.ranks.merged_trace`).

Times are kept from the host's monotonic clock and stated in wall-clock seconds (one reading
of ``time.time()`` at the start fixes the offset): the wall clocks of different hosts differ by
far more than a step's parts, which is why the alignment exists. On CUDA a part's marks are
CUDA events on the GPU's timeline, not host times: the timeline is kept on the CPU only (the
per-rank Kineto traces carry the GPU's).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

LIMIT = 5_000  # steps kept: a few hundred bytes each in the record


class Timeline:
    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.origin = time.time()  # the wall clock at ``self.start``
        self.start = clock()
        self.steps: list[tuple[int, float, float]] = []  # (step, start, end), seconds from start
        self.spans: list[tuple[int, str, float, float]] = []  # (step, part or collective:OP, start, end)
        self.syncs: list[tuple[int, int, float]] = []  # (step, k-th sync point of the step, time)
        self.ops: dict[int, str] = {}  # the current step's span index -> the collective's name

    def op(self, index: int, name: str) -> None:
        """Span ``index`` of the current step is a blocking collective called ``name``."""
        self.ops[index] = name

    def step(self, number: int, start: float | None, end: float, spans: list[list[Any]], *,
             backward_syncs: bool, keep: bool) -> None:
        """A step ended (the recorder's host marks): ``spans`` are [part, start, end, parent];
        ``backward_syncs``: the outermost backward's end is a sync point (DDP); ``keep``: a
        measured step on the host clock (the others only end the step's collective names)."""
        ops, self.ops = self.ops, {}
        if not keep or start is None or len(self.steps) >= LIMIT:
            return
        self.steps.append((number, start - self.start, end - self.start))
        ends, backward = [], None
        for i, (name, s, e, parent) in enumerate(spans):
            if e is None:
                continue
            inner = parent >= 0 and spans[parent][0] == "collective"  # all_gather in all_gather_object
            if inner:
                continue
            label = f"collective:{ops[i]}" if i in ops else name
            self.spans.append((number, label, s - self.start, e - self.start))
            if i in ops:
                ends.append(e - self.start)
            elif name == "backward" and backward_syncs:
                backward = e - self.start  # the step's last: earlier ones may be DDP's no_sync
        if backward is not None:
            ends.append(backward)
        self.syncs += [(number, k, t) for k, t in enumerate(sorted(ends))]

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, to the microsecond."""
        def us(x: float) -> float:
            return round(x, 6)

        return {"origin": self.origin,
                "steps": [[n, us(s), us(e)] for n, s, e in self.steps],
                "spans": [[n, name, us(s), us(e)] for n, name, s, e in self.spans],
                "syncs": [[n, k, us(t)] for n, k, t in self.syncs]}
