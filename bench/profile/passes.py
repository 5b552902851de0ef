"""Profiler passes: each profiler in its own rounds, interleaved with plain rounds, per variant.

Profilers distort each other and the timings, so the step times of a report come from the
engine's plain interleaved rounds, and each profiler gets its own pass. A pass alternates
plain and profiled rounds of one variant (plain-tool, tool-plain, ...): their paired ratio is
the profiler's overhead, with its interval. What the profiler captured is written into
``out`` as it finishes:

- ``cprofile``: ``<variant>.prof`` (cProfile; ``snakeviz reports/<variant>.prof``)
- ``lines``: ``<variant>.lprof`` and ``<variant>.lines.txt`` (line_profiler of the workload's
  ``profiled_functions()``, by default its ``fetch`` and ``step``)
- ``kineto``: ``tb/<variant>/*.pt.trace.json`` (a traced pass of 10 active steps after a wait
  step and 2 warm-up steps; categories fixed for TensorBoard's plugin)
  and ``<variant>.ops.txt`` (operator tables); the overhead rounds record what the traced
  pass records (shapes, memory, stacks) and are then discarded.
"""

from __future__ import annotations

import cProfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import torch

from bench.defaults import TOOLS
from bench.measure.engine import Engine
from bench.measure.quiet import without_profiler_chatter
from bench.measure.result import ToolTiming
from bench.profile.traces import publish_traces
from bench.workload import profiled_functions

KINETO_WAIT, KINETO_WARMUP, KINETO_ACTIVE = 1, 2, 10


def kineto_kwargs(device: torch.device) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    return {"activities": activities, "record_shapes": True, "profile_memory": True,
            "with_stack": True}


class _Tool:
    """A profiler as the pass needs it: a context for one round, then a writer."""

    def __init__(self, engine: Engine, name: str):
        self.engine, self.name, self.work = engine, name, engine.works[name]

    def round(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def write(self, out: Path) -> list[Path]:
        raise NotImplementedError


class _CProfile(_Tool):
    def __init__(self, engine: Engine, name: str):
        super().__init__(engine, name)
        self.profiler = cProfile.Profile()

    @contextmanager
    def round(self) -> Iterator[None]:
        self.profiler.enable()
        try:
            yield
        finally:
            self.profiler.disable()

    def write(self, out: Path) -> list[Path]:
        path = out / f"{self.name}.prof"
        self.profiler.dump_stats(str(path))
        return [path]


class _Lines(_Tool):
    def __init__(self, engine: Engine, name: str):
        from line_profiler import LineProfiler

        super().__init__(engine, name)
        self.profiler = LineProfiler()
        for fn in profiled_functions(self.work):
            self.profiler.add_function(fn)

    @contextmanager
    def round(self) -> Iterator[None]:
        # Enabled before the round's warm-up step: a generator that starts a fresh data pass
        # there (created after restore) is traced only if tracing is already on.
        self.profiler.enable_by_count()
        try:
            yield
        finally:
            self.profiler.disable_by_count()

    def write(self, out: Path) -> list[Path]:
        return write_lines(self.profiler, out, self.name)


def write_lines(profiler: Any, out: Path, name: str, notes: Sequence[str] = ()) -> list[Path]:
    """``<name>.lprof`` (python -m line_profiler reads it) and ``<name>.lines.txt`` (in ms)."""
    lprof, text = out / f"{name}.lprof", out / f"{name}.lines.txt"
    profiler.dump_stats(str(lprof))
    with open(text, "w") as fh:
        fh.write(f"# line_profiler of {name} (times in ms)\n")
        for note in notes:
            fh.write(f"# not traced: {note}\n")
        profiler.print_stats(stream=fh, output_unit=1e-3, stripzeros=True)
    return [lprof, text]


class _Kineto(_Tool):
    trace_steps = KINETO_ACTIVE

    def __init__(self, engine: Engine, name: str):
        super().__init__(engine, name)
        self.kwargs = kineto_kwargs(torch.device(self.work.device))

    @contextmanager
    def round(self) -> Iterator[None]:
        from torch.profiler import profile

        with without_profiler_chatter(), profile(**self.kwargs):  # recorded as when traced, dropped
            yield

    def write(self, out: Path) -> list[Path]:
        """One traced pass with a schedule: wait, warm-up, then up to KINETO_ACTIVE active steps."""
        from torch.profiler import profile, schedule, tensorboard_trace_handler

        active = self.trace_steps
        with tempfile.TemporaryDirectory(prefix="vaebench-trace-") as raw:
            prof = profile(schedule=schedule(wait=KINETO_WAIT, warmup=KINETO_WARMUP, active=active,
                                             repeat=1),
                           on_trace_ready=tensorboard_trace_handler(raw, worker_name=self.name),
                           **self.kwargs)
            with without_profiler_chatter():
                self.engine.run_round(self.name, KINETO_WAIT + KINETO_WARMUP + active,
                                       wrap=lambda: prof, on_step=prof.step)
            written = publish_traces(Path(raw), out / "tb" / self.name)
        sort = "self_cuda_time_total" if "CUDA" in str(self.kwargs["activities"]) else "self_cpu_time_total"
        with without_profiler_chatter():  # reading the events also prints, so it stays inside
            by_op = prof.key_averages().table(sort_by=sort, row_limit=30)
            by_shape = prof.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=30)
        ops = out / f"{self.name}.ops.txt"
        ops.write_text(
            f"# torch.profiler operators of {self.name} on {self.work.device}, {active} active steps, "
            f"sorted by self time\n\n{by_op}\n\n# grouped by input shape\n\n{by_shape}\n")
        return [*written, ops]


_TOOL_CLASSES: dict[str, type[_Tool]] = {"cprofile": _CProfile, "lines": _Lines, "kineto": _Kineto}


def steps_per_pass(windows: int, steps: int) -> int:
    """Progress units one pass reports: its timed steps."""
    return 2 * windows * steps


def profile_pass(engine: Engine, name: str, tool: str, out: Path, *, windows: int, steps: int,
                 trace_steps: int = KINETO_ACTIVE, on_step: Callable[[], None] | None = None
                 ) -> tuple[ToolTiming, list[Path]]:
    """``windows`` pairs of (plain, profiled) windows of ``name`` (a window: one restored round of
    ``steps`` steps), then the profiler's files in ``out``.

    ``trace_steps``: active steps of the Kineto trace (TensorBoard's plugin wants a few).
    """
    if tool not in _TOOL_CLASSES:
        raise ValueError(f"unknown tool {tool!r}: choose from {', '.join(TOOLS)}")
    profiler = _TOOL_CLASSES[tool](engine, name)
    if isinstance(profiler, _Kineto):
        profiler.trace_steps = trace_steps
    timing = ToolTiming(plain=[], tool=[])
    for r in range(windows):
        for which in (("plain", "tool") if r % 2 == 0 else ("tool", "plain")):
            if which == "plain":
                timing.plain.append(engine.run_round(name, steps, on_step=on_step))
            else:
                timing.tool.append(engine.run_round(name, steps, wrap=profiler.round, on_step=on_step))
    return timing, profiler.write(out)
