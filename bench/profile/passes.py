"""Profiler passes: each profiler (:mod:`bench.profile.tools`) in its own windows, alternated with
plain ones, per variant.

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

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from bench.measure.engine import Engine
from bench.measure.quiet import without_profiler_chatter
from bench.measure.result import ToolTiming
from bench.profile.tools import Kineto, Profiler, kineto_kwargs, make
from bench.profile.traces import publish_traces
from bench.workload import profiled_functions

KINETO_WAIT, KINETO_WARMUP, KINETO_ACTIVE = 1, 2, 10


@contextmanager
def running(profiler: Profiler) -> Iterator[None]:
    """One window under ``profiler``; started before the round's warm-up step (a generator that
    starts a fresh data pass there, created after restore, is traced only if tracing is on)."""
    with without_profiler_chatter():
        profiler.start()
    try:
        yield
    finally:
        with without_profiler_chatter():
            profiler.stop()


def trace_pass(engine: Engine, name: str, out: Path, active: int = KINETO_ACTIVE) -> list[Path]:
    """One traced pass with a schedule (wait, warm-up, then ``active`` steps) into ``tb/<name>``,
    and ``<name>.ops.txt``: the operator tables, by operator and by input shape."""
    from torch.profiler import profile, schedule, tensorboard_trace_handler

    work = engine.works[name]
    kwargs = kineto_kwargs(torch.device(work.device))
    with tempfile.TemporaryDirectory(prefix="vaebench-trace-") as raw:
        prof = profile(schedule=schedule(wait=KINETO_WAIT, warmup=KINETO_WARMUP, active=active, repeat=1),
                       on_trace_ready=tensorboard_trace_handler(raw, worker_name=name), **kwargs)
        with without_profiler_chatter():
            engine.run_round(name, KINETO_WAIT + KINETO_WARMUP + active, wrap=lambda: prof, on_step=prof.step)
        written = publish_traces(Path(raw), out / "tb" / name)
    sort = "self_cuda_time_total" if "CUDA" in str(kwargs["activities"]) else "self_cpu_time_total"
    with without_profiler_chatter():  # reading the events also prints, so it stays inside
        by_op = prof.key_averages().table(sort_by=sort, row_limit=30)
        by_shape = prof.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=30)
    ops = out / f"{name}.ops.txt"
    ops.write_text(f"# torch.profiler operators of {name} on {work.device}, {active} active steps, "
                   f"sorted by self time\n\n{by_op}\n\n# grouped by input shape\n\n{by_shape}\n")
    return [*written, ops]


def steps_per_pass(windows: int, steps: int) -> int:
    """Progress units one pass reports: its timed steps."""
    return 2 * windows * steps


def profile_pass(engine: Engine, name: str, tool: str, out: Path, *, windows: int, steps: int,
                 trace_steps: int = KINETO_ACTIVE, on_step: Callable[[], None] | None = None
                 ) -> tuple[ToolTiming, list[Path]]:
    """``windows`` pairs of (plain, profiled) windows of ``name`` (a window: one restored round of
    ``steps`` steps), then the profiler's files in ``out``.

    ``trace_steps``: active steps of the Kineto trace, taken in a pass of its own after the
    overhead's windows (TensorBoard's plugin wants a few steps, on a schedule).
    """
    work = engine.works[name]
    profiler = make(tool, device=torch.device(work.device), worker=name,
                    find=lambda: (profiled_functions(work), []))

    def tick() -> None:
        profiler.step()
        if on_step is not None:
            on_step()

    timing = ToolTiming(plain=[], tool=[])
    for r in range(windows):
        for which in (("plain", "tool") if r % 2 == 0 else ("tool", "plain")):
            if which == "plain":
                timing.plain.append(engine.run_round(name, steps, on_step=on_step))
            else:
                timing.tool.append(engine.run_round(name, steps, wrap=lambda: running(profiler),
                                                    on_step=tick))
    if isinstance(profiler, Kineto):
        return timing, trace_pass(engine, name, out, trace_steps)
    return timing, profiler.write(out, name)
