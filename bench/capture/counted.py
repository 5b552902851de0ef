"""The steps counted rather than timed, right after the first measured steps: one step's FLOPs
(``FlopCounterMode``) and, over two more, where its memory goes (:mod:`bench.measure.memory`).
Each is a window of its own: the measured steps pay for neither."""

from __future__ import annotations

from typing import Any

import torch

from bench.measure.result import Breakdown
from bench.measure.specs import COUNTED, ScriptSpec
from bench.profile.tools import Profiler

__all__ = ["COUNTED", "FlopsWindow", "MemoryWindow", "counted"]


class FlopsWindow(Profiler):
    """FlopCounterMode over one step: the matmuls and convolutions of forward, backward and the
    optimizer. A dispatch mode, not a tracer: it is entered and left right at the step's ends
    (Lightning fetches the next batch before a step, so a deferred start would come too late)."""

    deferred = False

    def __init__(self) -> None:
        self.mode: Any = None
        self.total: int | None = None

    def start(self) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        self.mode = FlopCounterMode(display=False)
        self.mode.__enter__()

    def stop(self) -> None:
        if self.mode is not None:
            self.mode.__exit__(None, None, None)
            self.total, self.mode = int(self.mode.get_total_flops()), None



class MemoryWindow(Profiler):
    """The memory breakdown over two steps: the profiler started before the first (which primes
    it), the objects read and the saved-tensor hooks on between them, read again after the
    second. Deferred like the other profilers (Kineto started or stopped inside the optimizer's
    record_function scope corrupted the heap now and then): each call runs at the next step's
    first part, the last in a settling step."""

    def __init__(self) -> None:
        from bench.measure.memory import StepMemory

        self.memory = StepMemory(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        self.steps = 0
        self.found: Breakdown | None = None

    def start(self) -> None:
        self.memory.start()

    def step(self) -> None:
        # it runs inside the script (at a step's first part): a failure of ours is said, never raised
        self.steps += 1
        try:
            (self.memory.between if self.steps == 1 else self.memory.end)()
        except Exception as exc:
            self.memory.error = f"the memory window failed ({type(exc).__name__}: {exc})"
            self.memory.release()

    def stop(self) -> None:
        try:
            self.found = self.memory.stop()
        except Exception as exc:
            self.memory.error = self.memory.error or f"the memory window failed ({type(exc).__name__}: {exc})"

    def result(self) -> tuple[Breakdown | None, str]:
        """The breakdown, or why there is none (the script ended first, the trace unreadable)."""
        if self.found is None:
            return None, self.memory.error or "the script ended before the memory window"
        return self.found, ""


def counted(spec: ScriptSpec) -> dict[str, Any]:
    made: dict[str, Any] = {"flops": FlopsWindow(), "memory": MemoryWindow()}
    return {kind: made[kind] for kind in spec.counted}
