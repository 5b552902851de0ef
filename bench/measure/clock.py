"""The timing primitive: every figure the harness reports is timed here, and only here.

:func:`time_steps` runs ``n`` steps of a workload (fetch labelled ``data``, then its step) and
returns a :class:`Timing`: the whole run's seconds, read between two device synchronizations,
and the seconds of every step and of every part of it.

Why it looks like this:
- On a GPU, work is queued: a host clock read without a synchronize times the launches, not
  the work. The run is synchronized at its start and end only -- never around a part -- so
  the copy/compute overlap of a pipelined data rung (``pinned``) survives being measured.
- The steps and parts inside a run are timed with CUDA events on the GPU's own timeline
  (read after the final synchronize), and with the host clock on the CPU.
- The clock is injectable, so the statistics built on it are tested with exact numbers.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.profiler import record_function

from plumbing.devices import synchronize

Clock = Callable[[], float]
NO_BATCH = object()


class DataExhausted(Exception):
    """``fetch()`` raised StopIteration: the workload's data stream ended after ``fetched`` batches
    of this run of steps."""

    def __init__(self, fetched: int):
        super().__init__(f"fetch() raised StopIteration after {fetched} batches")
        self.fetched = fetched


@dataclass
class Timing:
    """Raw times of one run of consecutive steps (seconds)."""

    seconds: float  # the whole run, synchronized at both ends
    steps: list[float]  # each step, fetch included
    parts: dict[str, list[float]] = field(default_factory=dict)  # part -> per-step seconds
    round: int = -1  # the interleaved round it belongs to (-1: none), for pairing across variants

    @property
    def per_step(self) -> float:
        """The run's sample: seconds per step, over the whole synchronized run."""
        return self.seconds / len(self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "steps": self.steps, "parts": self.parts, "round": self.round}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Timing:
        return cls(float(d["seconds"]), [float(x) for x in d["steps"]],
                   {k: [float(x) for x in v] for k, v in d.get("parts", {}).items()},
                   int(d.get("round", -1)))


class Marks:
    """Part and step boundaries: read off the host clock on the CPU (the clock is the truth
    there); on a GPU, CUDA events on the current stream, read after the run's final synchronize
    (a host clock would time the launches). The engine's steps and a captured script's are
    marked by this one class."""

    def __init__(self, cuda: bool, clock: Clock = time.perf_counter):
        self.cuda, self.clock = cuda, clock

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return self.clock()

    def elapsed(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1e3 if self.cuda else end - start  # CUDA's ms -> s


def time_steps(work: Any, n: int, *, batch: Any = NO_BATCH, clock: Clock = time.perf_counter,
               on_step: Callable[[], None] | None = None) -> Timing:
    """Time ``n`` steps of ``work``; with ``batch`` given, step on it and fetch nothing.

    ``on_step`` runs after each step, outside nothing but the run (a progress bar tick).
    """
    device = torch.device(work.device)
    marks = Marks(device.type == "cuda", clock)
    spans: list[tuple[str, Any, Any]] = []  # (part, start mark, end mark) of the current step
    per_part: dict[str, list[float]] = defaultdict(list)
    step_marks: list[tuple[Any, Any]] = []
    step_spans: list[list[tuple[str, Any, Any]]] = []

    @contextmanager
    def part(name: str) -> Iterator[None]:
        with record_function(name):
            start = marks.mark()
            try:
                yield
            finally:
                spans.append((name, start, marks.mark()))

    synchronize(device)
    begin = clock()
    for i in range(n):
        spans = []
        start = marks.mark()
        if batch is NO_BATCH:
            try:
                with part("data"):
                    current = work.fetch()
            except StopIteration:
                raise DataExhausted(i) from None
        else:
            current = batch
        work.step(current, part)
        step_marks.append((start, marks.mark()))
        step_spans.append(spans)
        if on_step is not None:
            on_step()
    synchronize(device)
    seconds = clock() - begin

    # First-seen order, not a set's: the same workload gives the same columns in every run.
    names = list(dict.fromkeys(name for spans_ in step_spans for name, _, _ in spans_))
    for spans_ in step_spans:
        totals = dict.fromkeys(names, 0.0)
        for name, s, e in spans_:
            totals[name] += marks.elapsed(s, e)
        for name in names:
            per_part[name].append(totals[name])
    steps = [marks.elapsed(s, e) for s, e in step_marks]
    return Timing(seconds=seconds, steps=steps, parts=dict(per_part))
