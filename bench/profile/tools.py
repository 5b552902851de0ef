"""The profilers, one class each, used alike by the engine's passes (``profile``) and a script's
windows (``vaebench run``): each is started and stopped around a stretch of steps, told of each
step, and writes its files once at the end.

- ``cprofile``: ``<name>.prof`` (``snakeviz``)
- ``lines``: ``<name>.lprof`` and ``<name>.lines.txt`` (line_profiler of the functions given)
- ``kineto``: ``tb/<name>/*.pt.trace.json`` (torch.profiler; the last stretch's trace, its steps
  marked ``ProfilerStep#N``, categories fixed for TensorBoard's plugin)
"""

from __future__ import annotations

import cProfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bench.defaults import TOOLS


class Profiler:
    """One profiler over stretches of steps. ``deferred`` (for a script's windows): started,
    stepped and stopped at the next step's first part, outside every record_function scope --
    Kineto started inside the optimizer's scope corrupted the heap now and then."""

    deferred = True

    def start(self) -> None: ...

    def step(self) -> None: ...

    def stop(self) -> None: ...

    def write(self, out: Path, name: str) -> list[Path]:
        return []


class CProfile(Profiler):
    def __init__(self) -> None:
        self.profiler = cProfile.Profile()
        self.ran = False

    def start(self) -> None:
        self.profiler.enable()
        self.ran = True

    def stop(self) -> None:
        self.profiler.disable()

    def write(self, out: Path, name: str) -> list[Path]:
        if not self.ran:  # its windows never came (the script ended first): no empty file
            return []
        path = out / f"{name}.prof"
        self.profiler.dump_stats(str(path))
        return [path]


# The functions line_profiler traces, found when it first starts (a script's functions exist only
# once it runs), and notes on what could not be traced.
Finder = Callable[[], tuple[list[Any], list[str]]]


class Lines(Profiler):
    def __init__(self, find: Finder) -> None:
        from line_profiler import LineProfiler

        self.profiler = LineProfiler()
        self.find = find
        self.added = False
        self.notes: list[str] = []

    def start(self) -> None:
        if not self.added:
            functions, self.notes = self.find()
            for fn in functions:
                self.profiler.add_function(fn)
            self.added = True
        self.profiler.enable_by_count()

    def stop(self) -> None:
        if self.added:
            self.profiler.disable_by_count()

    def write(self, out: Path, name: str) -> list[Path]:
        if not self.added:  # its windows never came: no empty file
            return []
        return write_lines(self.profiler, out, name, self.notes)


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


def kineto_kwargs(device: torch.device) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    return {"activities": activities, "record_shapes": True, "profile_memory": True,
            "with_stack": True}


def _always_record(step: int) -> Any:
    from torch.profiler import ProfilerAction

    return ProfilerAction.RECORD


class Kineto(Profiler):
    """torch.profiler over each stretch; the last one is kept for :meth:`write`."""

    def __init__(self, device: torch.device, worker: str) -> None:
        self.kwargs = kineto_kwargs(device)
        self.worker = worker
        self.prof: Any = None
        self.last: Any = None

    def start(self) -> None:
        from torch.profiler import profile

        # A schedule that always records: without one, profile() marks no ProfilerStep#N, and
        # TensorBoard's plugin needs those to see steps.
        self.prof = profile(**self.kwargs, schedule=_always_record)
        self.prof.start()

    def step(self) -> None:
        if self.prof is not None:
            self.prof.step()

    def stop(self) -> None:
        if self.prof is not None:
            self.prof.stop()
            self.last, self.prof = self.prof, None

    def write(self, out: Path, name: str) -> list[Path]:
        from bench.profile.traces import publish_traces

        if self.last is None:
            return []
        with tempfile.TemporaryDirectory(prefix="vaebench-trace-") as raw:
            self.last.export_chrome_trace(str(Path(raw) / f"{self.worker}.pt.trace.json"))
            return publish_traces(Path(raw), out / "tb" / name)


def make(tool: str, *, device: torch.device, worker: str, find: Finder) -> Profiler:
    """The profiler named ``tool`` (one of :data:`bench.defaults.TOOLS`)."""
    if tool == "cprofile":
        return CProfile()
    if tool == "lines":
        return Lines(find)
    if tool == "kineto":
        return Kineto(device, worker)
    raise ValueError(f"unknown tool {tool!r}: choose from {', '.join(TOOLS)}")
