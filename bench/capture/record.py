"""One process's capture as a plain record (a Measurement: what each torchrun rank writes), and
the merge of the records into the one Result every renderer reads.

A single process is one "variant" named after the script; under torchrun each rank is one,
``rank0`` ... ``rankN-1``, and their steps are paired by step index (synchronous data-parallel
training keeps the ranks in step). Across ranks the report also states the **skew** and names
a **straggler** (:mod:`bench.ranks.skew`).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from bench.capture import duet
from bench.capture.script import Outcome, run_script
from bench.defaults import STEP_PARTS, UNHOOKED
from bench.measure.environment import Environment
from bench.measure.footprint import machine_peak, process_memory
from bench.measure.result import Footprint, Measurement, Process, Result, ToolTiming
from bench.measure.specs import ScriptSpec

log = logging.getLogger("bench")
RANK_ENTRY = "bench.capture.rank"  # the module each torchrun rank runs


def observe(spec: ScriptSpec, out: Path) -> tuple[Result, int]:
    """The script observed -- in this process, or as ``spec.nproc`` torchrun ranks -- as one
    Result (profiler files into ``out``), and the script's exit code (130: Ctrl-C). What
    ``vaebench run`` and each process of ``--try``/``--fit``/``--compare`` run."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    begin = time.perf_counter()
    if spec.nproc:
        from bench.ranks.launch import launch_ranks  # the parent's only: a rank need not load it

        records, code = launch_ranks(spec, out, RANK_ENTRY)
    else:
        outcome = run_script(spec, out)
        if outcome.stopped:
            log.info("stopped the script after %d steps: the measured window and the profiler windows "
                     "are complete", outcome.recorder.steps_seen)
        records, code = [record(spec, outcome)], 130 if outcome.interrupted else (outcome.exit_code or 0)
    return merge(spec, records, started=started, duration_s=time.perf_counter() - begin), code


def record(spec: ScriptSpec, outcome: Outcome, rank: int | None = None) -> Measurement:
    """Everything one process measured (raw samples only): its Measurement."""
    rec = outcome.recorder
    profiles = {}
    for tool in (UNHOOKED, *spec.tools) if spec.steps else ():
        plain, used = rec.pairs(tool)
        if plain:
            profiles[tool] = ToolTiming(plain, used)
    if spec.duet is not None:  # --try's switches: each side's pairs, by block
        profiles |= {duet.kind(side): duet.pairs(rec.windows, side, spec.duet.window(side)[0])
                     for side in spec.duet.sides}
        notes = {"warm": duet.warm_steps(rec.windows)}
        if outcome.error and rec.filling is not None:
            notes["failed_in"] = duet.blamed(rec.windows, rec.filling)
    else:
        notes = {}
    rss_mb, cuda_mb = process_memory()
    local = int(os.environ.get("LOCAL_RANK", rank or 0)) if rank is not None else None
    process = Process(rank=rank, local_rank=local, node=socket.gethostname(),
                      node_rank=int(os.environ.get("GROUP_RANK", "0")),
                      world_size=int(os.environ.get("WORLD_SIZE", "1")), step_rule=rec.rule,
                      steps_seen=rec.steps_seen, warmup=spec.warmup,
                      pid=os.getpid(), **rec.allreduce(), stopped=outcome.stopped,
                      exit_code=outcome.exit_code, error=outcome.error, interrupted=outcome.interrupted,
                      no_step=outcome.no_step, waited=outcome.waited, oom=outcome.oom,
                      micro_batches=rec.samples.micro_batches(), step_batches=rec.samples.batches(),
                      step_round=list(rec.rounds.round),
                      built=list(rec.builds.found), losses=[_finite(x) for x in rec.losses],
                      threads=torch.get_num_threads(), warmup_s=rec.warmup_s, observe_pairs=rec.observe_pairs,
                      timeline=rec.timeline.as_dict() if rank is not None and not rec.cuda else {})
    failed = outcome.error or outcome.no_step or outcome.interrupted
    return Measurement(
        name=spec.name if rank is None else f"rank{rank}", status="failed" if failed else "ok",
        reason=status_line(process) if failed else "", samples=rec.window("measure"), profiles=profiles,
        artifacts=list(outcome.artifacts), parts=list(STEP_PARTS), description=spec.shell(),
        device="cuda" if rec.cuda else "cpu", batch_size=rec.samples.batch_size(), process=process,
        notes=notes,
        footprint=Footprint(flops_per_step=outcome.flops_per_step, max_rss_mb=rss_mb, cuda_peak_mb=cuda_mb,
                            breakdown=outcome.breakdown, breakdown_error=outcome.breakdown_error))


def _finite(loss: torch.Tensor) -> float | None:
    """A loss as JSON can hold it: inf and NaN as None (what --try's numerics call diverged)."""
    x = float(loss)
    return x if math.isfinite(x) else None


def merge(spec: ScriptSpec, records: list[Measurement], *, started: str, duration_s: float) -> Result:
    """The records of one run (one per process) as one Result."""
    device = next((m.device for m in records if m.samples), "cpu")
    result = Result(kind="script", spec=spec,
                    machine=Environment.capture(torch.device(device)), measurements=list(records),
                    created=started, duration_s=duration_s)
    if any(m.footprint.flops_per_step for m in records):
        # here the script has ended, its workers with it: the peak is measured on a quiet machine,
        # again where a step came within reach of the cached one
        achieved = max(((m.footprint.flops_per_step or 0) / min(t.per_step for t in m.samples)
                        for m in records if m.samples), default=0.0)
        result.peak = machine_peak(torch.device(device), result.machine.describe(), at_least=achieved)
    return result


def status_line(process: Process) -> str:
    if process.no_step:
        return process.waited or "no optimizer.step() or backward() seen: is this a training script?"
    if process.interrupted:
        return f"interrupted (Ctrl-C) after {process.steps_seen} steps: the results are partial"
    return process.error
