"""The whole ``profile`` job: interleaved rounds, full epochs, counters, profiler passes -> Result.

The engine measures; this module only puts its steps in order, reports progress, and writes
the profilers' files into a folder (the CLI's staging folder). A variant that fails at any
stage is recorded as failed with its reason, and the others' results are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.measure.counters import count_step
from bench.measure.engine import BOUND, Plan, Session, describe_exception
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def total_steps(plan: Plan, spec: RunSpec, session: Session) -> int:
    """Progress units of a run: every timed step."""
    names = [*session.works, *([BOUND] if plan.bound and session.works else [])]
    rounds = sum(len(range(0, plan.rounds, session.every(n))) * int(
        session.info[session.bound_of if n == BOUND and session.bound_of else n]["round_steps"])
        for n in names)
    epoch_steps = sum(int(session.info[n]["batches_per_epoch"]) for n in session.epoch_names())
    profiled = sum(steps_per_pass(spec.profile_rounds, max(spec.profile_steps,
                                                            int(session.info[n]["round_steps"])))
                   for n in profiled_names(session))
    return rounds + plan.epochs * epoch_steps + len(spec.tools) * profiled


def profiled_names(session: Session) -> list[str]:
    """The variants profilers look at: each plain one (no ``reference``) and the last, unless a
    workload opts out (``profile = False``: e.g. its work happens in other processes)."""
    names = list(session.works)
    return [n for n in names if getattr(session.works[n], "profile", True)
            and (session.info[n].get("reference") is None or n == names[-1])]


def run(spec: RunSpec, plan: Plan, variants: Variants, out: Path, *,
        progress: Callable[[str, int], Callable[[], None]] | None = None) -> Result:
    """Measure ``variants``; profiler files go into ``out``; returns the Result (not yet saved).

    ``progress(stage, total)`` is called once, after the variants are built, and returns a
    per-step tick (a progress bar).
    """
    session = Session(variants, plan)
    session.prepare()
    tick = progress("measuring", total_steps(plan, spec, session)) if progress else None

    rounds, orders = session.interleaved(on_step=tick)
    epochs = session.epochs(on_step=tick) if plan.epochs else {}
    result = Result(spec=spec.as_dict(), plan=plan.as_dict(),
                    machine=Environment.capture(torch.device(spec.device)),
                    variants=list(variants), status={}, info=session.info, rounds=rounds,
                    orders=orders, bound_of=session.bound_of if session.bound_of in rounds else None,
                    epochs=epochs)
    profiled = profiled_names(session)
    for name in list(session.works):
        if spec.counters:
            try:
                result.counters[name] = count_step(session.works[name], session.snapshots[name]).as_dict()
            except Exception as exc:
                session.fail(name, f"counting raised {describe_exception(exc)}")
                continue
        for tool in spec.tools if name in profiled else ():
            try:
                timing, files = profile_pass(session, name, tool, out, rounds=spec.profile_rounds,
                                             steps=spec.profile_steps, trace_steps=spec.trace_steps,
                                             on_step=tick)
            except Exception as exc:
                result.reasons[f"{name}/{tool}"] = f"{tool} pass raised {describe_exception(exc)}"
                log.error("%s: %s pass failed: %s", name, tool, describe_exception(exc))
                continue
            result.profiles.setdefault(name, {})[tool] = timing
            result.artifacts.setdefault(name, []).extend(str(p.relative_to(out)) for p in files)
    for name in variants:
        if name in session.skipped:
            result.status[name], result.reasons[name] = "skipped", session.skipped[name]
        elif name in session.failed:
            result.status[name], result.reasons[name] = "failed", session.failed[name]
        else:
            result.status[name] = "ok"
    result.rounds = {n: t for n, t in result.rounds.items() if result.status.get(n) != "failed"}
    return result
