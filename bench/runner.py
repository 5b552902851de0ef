"""Runs a RunSpec: one untouched timing pass, then one pass per profiler; returns ProfileRun.

Profilers distort each other and the timings, so each gets its own pass after a fresh
warm-up, and the figures in the summary come from the pass with no profiler attached. The
runner only arranges the profilers (cProfile, line_profiler, torch.profiler); the writers in
``bench.writers`` turn the result into files.
"""

from __future__ import annotations

import cProfile
import inspect
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.profiler import record_function

from bench import stats
from bench.environment import Environment
from bench.spec import RunSpec
from vae.data import MnistSplit
from vae.device import synchronize
from vae.model import VAE
from vae.pipelines import Pipeline, make_pipeline
from vae.train import train_step

PHASES: tuple[str, ...] = ("data", "forward", "backward", "optimizer")
TOOLS: tuple[str, ...] = ("cprofile", "lines", "kineto")
KINETO_WAIT, KINETO_WARMUP, KINETO_MAX_ACTIVE = 1, 2, 10


@dataclass
class ToolPass:
    """One profiler's pass: its per-step times (to show its overhead) and what it captured."""

    tool: str
    step_times: list[float]
    artifact: Any  # cProfile.Profile | LineProfiler | Path (folder of raw Kineto traces)
    tables: dict[str, str] = field(default_factory=dict)  # kineto: key_averages tables


@dataclass
class ProfileRun:
    """Everything measured for one RunSpec; every writer takes this (or a list of them)."""

    spec: RunSpec
    environment: Environment
    dataset: str  # e.g. "synthetic train (60000 images from data/synthetic)"
    num_samples: int
    batches_per_epoch: int
    step_times: list[float]  # seconds per training step (fetch included), no profiler
    phase_times: dict[str, list[float]]  # PHASES -> seconds per step, same pass
    passes: dict[str, ToolPass] = field(default_factory=dict)
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def pipeline(self) -> str:
        return self.spec.pipeline

    @property
    def median_step(self) -> float:
        return stats.median(self.step_times)

    @property
    def step_iqr(self) -> float:
        return stats.iqr(self.step_times)

    def share(self, phase: str) -> float:
        """Share of the step spent in ``phase`` (sum over steps / sum of step times)."""
        return sum(self.phase_times[phase]) / sum(self.step_times)

    @property
    def samples_per_second(self) -> float:
        return self.spec.batch_size / self.median_step

    @property
    def epoch_seconds(self) -> float:
        """Median step time x batches per epoch: the epoch this run's data would take."""
        return self.median_step * self.batches_per_epoch

    def overhead(self, tool: str) -> float:
        """Median step time under ``tool`` / without a profiler (1.0 = no overhead)."""
        return stats.median(self.passes[tool].step_times) / self.median_step


class Workload:
    """A model, its optimizer and an endless stream of batches from one pipeline."""

    def __init__(self, spec: RunSpec, split: MnistSplit, device: torch.device):
        torch.manual_seed(spec.seed)
        self.device = device
        self.model = VAE().to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.pipeline: Pipeline = make_pipeline(spec.pipeline, split, batch_size=spec.batch_size,
                                                device=device, seed=spec.seed)
        self._batches: Iterator[torch.Tensor] = iter(self.pipeline)

    def new_epoch(self) -> None:
        """Start a fresh epoch; its generators are created now (tracers see frames from birth)."""
        self._batches = iter(self.pipeline)

    def fetch(self) -> torch.Tensor:
        """The next batch; a new epoch (new permutation) starts when one runs out."""
        batch = next(self._batches, None)
        if batch is None:
            self._batches = iter(self.pipeline)
            batch = next(self._batches)
        return batch

    def step(self, phase: Callable[[str], Any] = record_function) -> None:
        with phase("data"):
            batch = self.fetch()
        train_step(self.model, batch, self.optimizer, phase=phase)

    def timed_steps(self, n: int, on_step: Callable[[], None] | None = None) -> list[float]:
        """Run ``n`` steps; seconds per step, each ended by a device synchronize."""
        times = []
        for _ in range(n):
            synchronize(self.device)
            start = time.perf_counter()
            self.step()
            synchronize(self.device)
            times.append(time.perf_counter() - start)
            if on_step is not None:
                on_step()
        return times

    def warm_up(self, n: int) -> None:
        for _ in range(n):
            self.step()
        synchronize(self.device)

    def fetch_functions(self) -> list[Callable]:
        """The functions that produce a batch for this pipeline (for line_profiler)."""
        found: list[Callable] = []
        for cls in type(self.pipeline).__mro__:
            if "_batches" in vars(cls):
                found.append(vars(cls)["_batches"])
        dataset = getattr(self.pipeline, "dataset", None)
        if dataset is not None and inspect.isfunction(type(dataset).__getitem__):
            found.append(type(dataset).__getitem__)
        return found


class PhaseTimer:
    """A ``phase`` for train_step that times each part (synchronizing the device around it)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.current: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str):
        with record_function(name):
            synchronize(self.device)
            start = time.perf_counter()
            yield
            synchronize(self.device)
            self.current[name] += time.perf_counter() - start


def _timing_pass(work: Workload, spec: RunSpec, tick: Callable[[], None]
                 ) -> tuple[list[float], dict[str, list[float]]]:
    """Step times and per-phase times, with no profiler attached."""
    work.warm_up(spec.warmup)
    timer = PhaseTimer(work.device)
    steps: list[float] = []
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    for _ in range(spec.steps):
        timer.current.clear()
        synchronize(work.device)
        start = time.perf_counter()
        work.step(phase=timer)
        synchronize(work.device)
        steps.append(time.perf_counter() - start)
        for p in PHASES:
            phases[p].append(timer.current[p])
        tick()
    return steps, phases


def _cprofile_pass(work: Workload, spec: RunSpec, tick: Callable[[], None]) -> ToolPass:
    work.warm_up(spec.warmup)
    profiler = cProfile.Profile()
    times = []
    for _ in range(spec.steps):
        synchronize(work.device)
        start = time.perf_counter()
        profiler.enable()
        work.step()
        synchronize(work.device)
        profiler.disable()
        times.append(time.perf_counter() - start)
        tick()
    return ToolPass("cprofile", times, profiler)


def _lines_pass(work: Workload, spec: RunSpec, tick: Callable[[], None]) -> ToolPass:
    from line_profiler import LineProfiler

    profiler = LineProfiler()
    for fn in [*work.fetch_functions(), train_step]:
        profiler.add_function(fn)
    work.warm_up(spec.warmup)
    profiler.enable_by_count()
    # A generator started before tracing began is never traced: begin the epoch under it.
    work.new_epoch()
    try:
        times = work.timed_steps(spec.steps, tick)
    finally:
        profiler.disable_by_count()
    return ToolPass("lines", times, profiler)


def _kineto_pass(work: Workload, spec: RunSpec, trace_dir: Path, tick: Callable[[], None]) -> ToolPass:
    from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

    active = min(spec.steps, KINETO_MAX_ACTIVE)
    activities = [ProfilerActivity.CPU]
    if work.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    trace_dir.mkdir(parents=True, exist_ok=True)
    work.warm_up(spec.warmup)
    times = []
    with profile(activities=activities,
                 schedule=schedule(wait=KINETO_WAIT, warmup=KINETO_WARMUP, active=active, repeat=1),
                 on_trace_ready=tensorboard_trace_handler(str(trace_dir), worker_name=spec.pipeline),
                 record_shapes=True, profile_memory=True, with_stack=True) as prof:
        for i in range(KINETO_WAIT + KINETO_WARMUP + active):
            step_times = work.timed_steps(1)
            if i >= KINETO_WAIT + KINETO_WARMUP:
                times.extend(step_times)
                tick()
            prof.step()
    sort = "self_cuda_time_total" if work.device.type == "cuda" else "self_cpu_time_total"
    tables = {
        "by_op": prof.key_averages().table(sort_by=sort, row_limit=30),
        "by_shape": prof.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=30),
    }
    return ToolPass("kineto", times, trace_dir, tables)


@dataclass
class ProfileReport:
    """All runs of one ``bench profile`` invocation, plus what was skipped and why."""

    runs: list[ProfileRun]
    skipped: dict[str, str] = field(default_factory=dict)  # pipeline -> reason
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


def passes_per_run(spec: RunSpec, tools: tuple[str, ...]) -> int:
    """Progress units one run reports: measured steps of each pass."""
    kineto = min(spec.steps, KINETO_MAX_ACTIVE) if "kineto" in tools else 0
    return spec.steps * (1 + len([t for t in tools if t != "kineto"])) + kineto


def profile(spec: RunSpec, split: MnistSplit, tools: tuple[str, ...], scratch: Path,
            *, tick: Callable[[], None] = lambda: None) -> ProfileRun:
    """Measure ``spec`` on ``split``: a timing pass, then one pass per tool in ``tools``.

    ``scratch`` receives raw Kineto traces (``scratch/tb/<pipeline>``); ``tick`` is called
    once per measured step, for a progress bar.
    """
    unknown = set(tools) - set(TOOLS)
    if unknown:
        raise ValueError(f"unknown tool(s) {', '.join(sorted(unknown))}: choose from {', '.join(TOOLS)}")
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = torch.device(spec.device)
    work = Workload(spec, split, device)
    steps, phases = _timing_pass(work, spec, tick)
    run = ProfileRun(spec=spec, environment=Environment.capture(device), dataset=split.description,
                     num_samples=len(split), batches_per_epoch=len(work.pipeline),
                     step_times=steps, phase_times=phases)
    if "cprofile" in tools:
        run.passes["cprofile"] = _cprofile_pass(work, spec, tick)
    if "lines" in tools:
        run.passes["lines"] = _lines_pass(work, spec, tick)
    if "kineto" in tools:
        run.passes["kineto"] = _kineto_pass(work, spec, scratch / "tb" / spec.pipeline, tick)
    return run
