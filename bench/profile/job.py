"""The whole ``profile`` job: interleaved rounds, full epochs, counters, profiler passes -> Result.

The engine measures; this module only puts its steps in order, reports progress, and writes
the profilers' files into a folder (the CLI's staging folder). A variant that fails at any
stage is recorded as failed with its reason, and the others' results are kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench.measure.counters import count_operators
from bench.measure.engine import Engine, Plan, describe_exception, describe_failure
from bench.measure.environment import Environment
from bench.measure.result import Measurement, Result
from bench.measure.specs import VariantsSpec
from bench.profile.passes import profile_pass, steps_per_pass
from bench.workload import Variants

log = logging.getLogger(__name__)





class NothingMeasured(Exception):
    """No variant could be built and warmed up: the message says why (the first reason)."""


def total_steps(plan: Plan, spec: VariantsSpec, engine: Engine) -> int:
    """Progress units of a run: every timed step."""
    rounds = sum(len(range(0, plan.rounds, engine.every(n)))
                 * engine.info[engine.target(n)].round_steps for n in engine.measured)
    epoch_steps = sum(int(engine.info[n].batches_per_epoch or 0) for n in engine.epoch_names())
    profiled = sum(steps_per_pass(spec.profile_windows, max(spec.profile_steps, engine.info[n].round_steps))
                   for n in profiled_names(engine))
    return rounds + plan.epochs * epoch_steps + len(spec.tools) * profiled


def profiled_names(engine: Engine) -> list[str]:
    """The variants profilers look at: each plain one (no ``reference``) and the last, unless a
    workload opts out (``profile = False``: e.g. its work happens in other processes)."""
    names = list(engine.works)
    return [n for n in names if getattr(engine.works[n], "profile", True)
            and (engine.info[n].reference is None or n == names[-1])]


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
    return float(engine.info[engine.target(name)].warm_step_s or 0.0)


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


def run(spec: VariantsSpec, variants: Variants, out: Path, *,
        progress: Callable[[str, int], Callable[[], None]] | None = None,
        clock: Callable[[], float] = time.perf_counter) -> Result:
    """Measure ``variants`` as ``spec`` asks; profiler files go into ``out``; returns the Result
    (not yet saved).

    ``progress(stage, total)`` is called once, after the variants are built, and returns a
    per-step tick (a progress bar); ``clock`` times the rounds (injected by tests). Raises
    :class:`NothingMeasured` when no variant could be built and warmed up. A variant that fails
    in a later phase keeps what it measured before.
    """
    started = datetime.now(UTC)
    begin = time.perf_counter()
    plan = spec.plan
    engine = Engine(variants, plan, clock=clock)
    engine.prepare()
    if not engine.works:
        reasons = {**engine.failed, **engine.skipped}
        name, why = next(iter(reasons.items()), ("", "the factory returned no variant"))
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        raise NothingMeasured(f"variant {name!r}: {why}{more}; nothing was measured" if name else why)
    tick = progress("measuring", total_steps(plan, spec, engine)) if progress else None
    announce(f"{plan.rounds} interleaved rounds of {len(engine.measured)} series", sum(
        len(range(0, plan.rounds, engine.every(n))) * (engine.info[engine.target(n)].round_steps
                                                       + plan.round_warmup) * _step_s(engine, n)
        for n in engine.measured))
    rounds, orders = engine.interleaved(on_step=tick)
    if plan.epochs:
        announce(f"{plan.epochs} full epoch(s) of {', '.join(engine.epoch_names())}", plan.epochs * sum(
            (int(engine.info[n].batches_per_epoch or 0) + plan.round_warmup) * _step_s(engine, n, rounds)
            for n in engine.epoch_names()))
    epochs = engine.epochs(on_step=tick) if plan.epochs else {}
    machine = Environment.capture(torch.device(spec.device))
    result = Result(kind="variants", spec=spec, machine=machine, orders=orders,
                    measurements=_measurements(engine, variants, rounds, epochs),
                    created=started.isoformat(timespec="seconds"))
    if plan.footprint:
        result.peak = _peak(result, spec, machine)
    _after_rounds(engine, spec, result, out, tick)
    _set_status(engine, result)
    result.duration_s = time.perf_counter() - begin
    return result


def _measurements(engine: Engine, variants: Variants, rounds: dict[str, list[Any]],
                  epochs: dict[str, list[Any]]) -> list[Measurement]:
    """Every variant asked (skipped ones too), then the measured bounds, with their samples."""
    out = [engine.info.get(name) or Measurement(name=name) for name in variants]
    out += [engine.info[b] for b in engine.bounds if b in rounds]
    for m in out:
        m.samples, m.epochs = list(rounds.get(m.name, [])), list(epochs.get(m.name, []))
    return out


def _peak(result: Result, spec: VariantsSpec, machine: Environment) -> dict[str, Any]:
    """The machine's peak FLOP/s, at least what a measured step achieved (a busy machine's
    cached peak would give an MFU above 1)."""
    from bench.measure.footprint import machine_peak

    achieved = max(((m.footprint.flops_per_step or 0) / min(t.per_step for t in m.samples)
                    for m in result.measurements if m.samples), default=0.0)
    return machine_peak(torch.device(spec.device), machine.describe(), at_least=achieved)


def _after_rounds(engine: Engine, spec: VariantsSpec, result: Result, out: Path,
                  tick: Callable[[], None] | None) -> None:
    """Per variant: the memory snapshot (CUDA), the exact counters, then each profiler's windows."""
    profiled = profiled_names(engine)
    announce(f"the profilers ({', '.join(spec.tools)})", len(spec.tools) * sum(
        2 * spec.profile_windows * (max(spec.profile_steps, engine.info[n].round_steps)
                                    + spec.plan.round_warmup) * _step_s(engine, n) * 1.5
        for n in profiled))
    cuda = torch.device(spec.device).type == "cuda"
    if spec.memory_snapshot and not cuda:
        result.partial["memory-snapshot/all"] = ("skipped: the allocator's memory history is CUDA-only "
                                                 "(torch.cuda.memory._record_memory_history)")
    for name in list(engine.works):
        m = result[name]
        if spec.memory_snapshot and cuda:
            try:
                m.artifacts.append(str(_memory_snapshot(engine, name, out).relative_to(out)))
            except Exception as exc:
                result.partial[f"{name}/memory-snapshot"] = describe_failure(exc, "the memory snapshot")
        if spec.counters:
            try:
                m.counters = count_operators(engine.works[name], engine.snapshots[name]).as_dict()
            except Exception as exc:
                engine.fail(name, describe_failure(exc, "counting its operators"))
                continue
        for tool in spec.tools if name in profiled else ():
            try:
                timing, files = profile_pass(engine, name, tool, out, windows=spec.profile_windows,
                                             steps=spec.profile_steps, trace_steps=spec.trace_steps,
                                             on_step=tick)
            except Exception as exc:
                result.partial[f"{name}/{tool}"] = describe_failure(exc, f"the {tool} pass")
                log.error("%s: %s pass failed: %s", name, tool, describe_exception(exc))
                continue
            m.profiles[tool] = timing
            m.artifacts.extend(str(p.relative_to(out)) for p in files)


def _set_status(engine: Engine, result: Result) -> None:
    for m in result.measurements:
        if m.name in engine.skipped:
            m.status, m.reason = "skipped", engine.skipped[m.name]
        elif m.name in engine.failed:
            m.status, m.reason = "failed", engine.failed[m.name]
