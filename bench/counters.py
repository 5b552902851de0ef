"""Deterministic counters of a training step: they have no timing noise at all.

A slowdown that comes with more operator calls, more host-to-device copies or more Python
calls per step is explained by them; one that comes with none is machine noise or a change
inside the kernels. Counted over the steady steps of a fresh epoch (its first step, which also
draws the permutation and, for `pinned`, starts the prefetch, is left out), so they repeat
exactly and read as the work of one typical step.
"""

from __future__ import annotations

import cProfile
import pstats
from dataclasses import asdict, dataclass

import torch
from torch.overrides import TorchFunctionMode

from bench.runner import Workload

_COPY_FUNCS = {"to", "cuda", "copy_", "_to_copy"}


class _H2DCounter(TorchFunctionMode):
    """Counts tensor copies from host memory to an accelerator made through torch functions."""

    def __init__(self):
        super().__init__()
        self.copies = 0
        self.bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
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


def count_step(work: Workload, steps: int = 5) -> StepCounters:
    """Count what ``steps`` training steps of ``work`` do, per step."""
    from torch.profiler import ProfilerActivity, profile

    work.warm_up(1)  # the optimizer's first step creates its state: count steady steps only

    def fresh_epoch() -> None:
        work.new_epoch()
        work.step()  # the epoch's start-up work is not per-step work

    fresh_epoch()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            work.step()
    ops = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))

    fresh_epoch()
    with _H2DCounter() as h2d:
        for _ in range(steps):
            work.step()

    fresh_epoch()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        work.step()
    profiler.disable()
    calls = pstats.Stats(profiler).total_calls  # type: ignore[attr-defined]
    return StepCounters(ops / steps, h2d.copies / steps, h2d.bytes / steps, calls / steps)
