"""The whole ``profile`` job: interleaved rounds, full epochs, counters, profiler passes -> Result.

The engine measures; this module only puts its steps in order, reports progress, and writes
the profilers' files into a folder (the CLI's staging folder). A variant that fails at any
stage is recorded as failed with its reason, and the others' results are kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench.measure.counters import count_step
from bench.measure.engine import Engine, Plan, describe_exception, describe_failure
from bench.measure.environment import Environment
from bench.measure.result import Result
from bench.profile.passes import TOOLS, profile_pass, steps_per_pass
from bench.workload import Variants

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """What was asked: saved in every run.json."""

    workload: str
    variants: tuple[str, ...]
    device: str
    batch_size: int
    seed: int
    threads: int | None
    data_dir: str
    dataset: str
    limit: int | None
    tools: tuple[str, ...] = TOOLS
    profile_rounds: int = 8  # pairs of plain/profiled rounds per profiler
    profile_steps: int = 5  # timed steps per profiler round
    trace_steps: int = 10  # active steps of the Kineto trace
    counters: bool = True
    memory_snapshot: bool = False  # CUDA: the allocator's history of a few steps per variant

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class NothingMeasured(Exception):
    """No variant could be built and warmed up: the message says why (the first reason)."""


def total_steps(plan: Plan, spec: RunSpec, engine: Engine) -> int:
    """Progress units of a run: every timed step."""
    rounds = sum(len(range(0, plan.rounds, engine.every(n)))
                 * int(engine.info[engine.target(n)]["round_steps"]) for n in engine.measured)
    epoch_steps = sum(int(engine.info[n]["batches_per_epoch"]) for n in engine.epoch_names())
    profiled = sum(steps_per_pass(spec.profile_rounds, max(spec.profile_steps,
                                                            int(engine.info[n]["round_steps"])))
                   for n in profiled_names(engine))
    return rounds + plan.epochs * epoch_steps + len(spec.tools) * profiled


def profiled_names(engine: Engine) -> list[str]:
    """The variants profilers look at: each plain one (no ``reference``) and the last, unless a
    workload opts out (``profile = False``: e.g. its work happens in other processes)."""
    names = list(engine.works)
    return [n for n in names if getattr(engine.works[n], "profile", True)
            and (engine.info[n].get("reference") is None or n == names[-1])]


LONG_STAGE_S = 60.0  # stages expected to take longer are announced with an estimate


def announce(stage: str, seconds: float) -> None:
    """Say how long a stage will take before it starts, when that is more than a minute."""
    if seconds > LONG_STAGE_S:
        log.info("%s: about %s (estimated from the steps measured so far)", stage, _duration(seconds))


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _step_s(engine: Engine, name: str, rounds: dict[str, list[Any]] | None = None) -> float:
    timings = (rounds or {}).get(name)
    if timings:
        return sorted(t.per_step for t in timings)[len(timings) // 2]
    return float(engine.info[engine.target(name)].get("warm_step_s") or 0.0)


def _memory_snapshot(engine: Engine, name: str, out: Path, steps: int = 3) -> Path:
    """CUDA: the caching allocator's history over a few steps, as the pickle memory_viz opens."""
    torch.cuda.memory._record_memory_history(max_entries=100_000)
    try:
        engine.run_round(name, steps)
        path = out / f"{name}.memory.pickle"
        torch.cuda.memory._dump_snapshot(str(path))
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    return path


def run(spec: RunSpec, plan: Plan, variants: Variants, out: Path, *,
        progress: Callable[[str, int], Callable[[], None]] | None = None,
        clock: Callable[[], float] = time.perf_counter) -> Result:
    """Measure ``variants``; profiler files go into ``out``; returns the Result (not yet saved).

    ``progress(stage, total)`` is called once, after the variants are built, and returns a
    per-step tick (a progress bar); ``clock`` times the rounds (injected by tests). Raises
    :class:`NothingMeasured` when no variant could be built and warmed up. A variant that fails
    in a later phase keeps what it measured before.
    """
    started = datetime.now(UTC)
    begin = time.perf_counter()
    engine = Engine(variants, plan, clock=clock)
    engine.prepare()
    if not engine.works:
        reasons = {**engine.failed, **engine.skipped}
        name, why = next(iter(reasons.items()), ("", "the factory returned no variant"))
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        raise NothingMeasured(f"variant {name!r}: {why}{more}; nothing was measured" if name else why)
    tick = progress("measuring", total_steps(plan, spec, engine)) if progress else None

    announce(f"{plan.rounds} interleaved rounds of {len(engine.measured)} series", sum(
        len(range(0, plan.rounds, engine.every(n))) * (engine.info[engine.target(n)]["round_steps"]
                                                       + plan.round_warmup) * _step_s(engine, n)
        for n in engine.measured))
    rounds, orders = engine.interleaved(on_step=tick)
    if plan.epochs:
        announce(f"{plan.epochs} full epoch(s) of {', '.join(engine.epoch_names())}", plan.epochs * sum(
            (int(engine.info[n]["batches_per_epoch"]) + plan.round_warmup) * _step_s(engine, n, rounds)
            for n in engine.epoch_names()))
    epochs = engine.epochs(on_step=tick) if plan.epochs else {}
    machine = Environment.capture(torch.device(spec.device))
    result = Result(spec=spec.as_dict(), plan=plan.as_dict(), machine=machine,
                    variants=list(variants), status={}, info=engine.info, rounds=rounds,
                    orders=orders, bounds={b: v for b, v in engine.bounds.items() if b in rounds},
                    ordered=variants.ordered, report=variants.report, epochs=epochs,
                    created=started.isoformat(timespec="seconds"))
    if plan.footprint:
        from bench.measure.footprint import machine_peak

        achieved = max((result.info[n].get("flops_per_step") or 0) / (sorted(t.per_step for t in ts)[0])
                       for n, ts in rounds.items() if ts and n in result.info) if rounds else 0.0
        result.peak = machine_peak(torch.device(spec.device), machine.describe(), at_least=achieved)
    profiled = profiled_names(engine)
    announce(f"the profilers ({', '.join(spec.tools)})", len(spec.tools) * sum(
        2 * spec.profile_rounds * (max(spec.profile_steps, int(engine.info[n]["round_steps"]))
                                   + plan.round_warmup) * _step_s(engine, n, rounds) * 1.5
        for n in profiled))
    if spec.memory_snapshot and torch.device(spec.device).type != "cuda":
        result.reasons["memory-snapshot/all"] = ("skipped: the allocator's memory history is CUDA-only "
                                                 "(torch.cuda.memory._record_memory_history)")
    for name in list(engine.works):
        if spec.memory_snapshot and torch.device(spec.device).type == "cuda":
            try:
                path = _memory_snapshot(engine, name, out)
                result.artifacts.setdefault(name, []).append(str(path.relative_to(out)))
            except Exception as exc:
                result.reasons[f"{name}/memory-snapshot"] = describe_failure(exc, "the memory snapshot")
        if spec.counters:
            try:
                result.counters[name] = count_step(engine.works[name], engine.snapshots[name]).as_dict()
            except Exception as exc:
                engine.fail(name, describe_failure(exc, "counting its operators"))
                continue
        for tool in spec.tools if name in profiled else ():
            try:
                timing, files = profile_pass(engine, name, tool, out, rounds=spec.profile_rounds,
                                             steps=spec.profile_steps, trace_steps=spec.trace_steps,
                                             on_step=tick)
            except Exception as exc:
                result.reasons[f"{name}/{tool}"] = describe_failure(exc, f"the {tool} pass")
                log.error("%s: %s pass failed: %s", name, tool, describe_exception(exc))
                continue
            result.profiles.setdefault(name, {})[tool] = timing
            result.artifacts.setdefault(name, []).extend(str(p.relative_to(out)) for p in files)
    for name in variants:
        if name in engine.skipped:
            result.status[name], result.reasons[name] = "skipped", engine.skipped[name]
        elif name in engine.failed:
            result.status[name], result.reasons[name] = "failed", engine.failed[name]
        else:
            result.status[name] = "ok"
    result.duration_s = time.perf_counter() - begin
    return result
