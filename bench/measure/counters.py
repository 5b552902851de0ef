"""Deterministic counters of a training step: they have no timing noise at all.

A slowdown that comes with more operator calls, more host-to-device copies or more Python
calls per step is explained by them; one that comes with none is machine noise or a change
inside the kernels. Counted over steady steps: the workload is restored (a fresh data stream,
the same batches every time) and one step runs uncounted first, so
the epoch's start-up work and the optimizer's lazily created state are left out.
"""

from __future__ import annotations

import cProfile
import pstats
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from bench.measure.clock import time_steps
from bench.measure.quiet import without_profiler_chatter

_COPY_FUNCS = {"to", "cuda", "copy_", "_to_copy"}


class _H2DCounter(TorchFunctionMode):
    """Counts tensor copies from host memory to an accelerator made through torch functions."""

    def __init__(self) -> None:
        super().__init__()
        self.copies = 0
        self.bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        if name in _COPY_FUNCS and isinstance(out, torch.Tensor) and out.device.type != "cpu":
            src = args[1] if name == "copy_" else args[0]
            if isinstance(src, torch.Tensor) and src.device.type == "cpu":
                self.copies += 1
                self.bytes += src.numel() * src.element_size()
        return out


@dataclass(frozen=True)
class StepCounters:
    op_calls_per_step: float  # torch operator calls (aten::*), from torch.profiler
    h2d_copies_per_step: float
    h2d_bytes_per_step: float
    python_calls_per_step: float  # function calls seen by cProfile

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def count_operators(work: Any, snapshot: Any, steps: int = 5) -> StepCounters:
    """Count what ``steps`` steps of ``work`` do, per step, starting from ``snapshot`` each time."""
    from torch.profiler import ProfilerActivity, profile

    def fresh() -> None:
        work.restore(snapshot)
        time_steps(work, 1)  # the uncounted first step

    fresh()
    with without_profiler_chatter():  # reading the events also prints, so it stays inside
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            time_steps(work, steps)
        ops = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))

    fresh()
    with _H2DCounter() as h2d:
        time_steps(work, steps)

    fresh()
    profiler = cProfile.Profile()
    profiler.enable()
    time_steps(work, steps)
    profiler.disable()
    calls = pstats.Stats(profiler).total_calls  # type: ignore[attr-defined]
    work.restore(snapshot)
    return StepCounters(ops / steps, h2d.copies / steps, h2d.bytes / steps, calls / steps)
