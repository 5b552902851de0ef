"""One process's capture as a plain record (what each torchrun rank writes), and the merge of
the records into the one Result every renderer reads.

A single process is one "variant" named after the script; under torchrun each rank is one,
``rank0`` ... ``rankN-1``, and their steps are paired by step index (synchronous data-parallel
training keeps the ranks in step). Across ranks the report also states the **skew** and names
a **straggler** (:mod:`bench.measure.skew`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from bench.capture.script import CaptureSpec, Outcome
from bench.capture.windows import PARTS, peak_memory
from bench.measure.clock import Timing
from bench.measure.environment import Environment
from bench.measure.result import Result, ToolTiming
from plumbing.files import write_atomic


def record(spec: CaptureSpec, outcome: Outcome, rank: int | None = None) -> dict[str, Any]:
    """Everything one process measured, JSON-ready (raw samples only)."""
    rec = outcome.recorder
    profiles = {}
    for tool in spec.tools if spec.steps else ():
        plain, used = rec.pairs(tool)
        if plain:
            profiles[tool] = {"plain": [t.as_dict() for t in plain], "tool": [t.as_dict() for t in used]}
    device = "cuda" if rec.cuda else "cpu"
    return {
        "rank": rank, "measure": [t.as_dict() for t in rec.window("measure")], "profiles": profiles,
        "info": {
            "parts": list(PARTS), "batch_size": rec.batch_size(), "description": spec.shell(),
            "device": device, "step_rule": rec.rule, "steps_seen": rec.steps_seen,
            "warmup": spec.warmup, "memory": peak_memory(), "pid": os.getpid(),
            "flops_per_step": outcome.flops_per_step, **rec.allreduce(),
            "stopped": outcome.stopped, "exit_code": outcome.exit_code, "error": outcome.error,
            "interrupted": outcome.interrupted, "no_step": outcome.no_step,
        },
        "artifacts": outcome.artifacts,
    }


def save_record(doc: dict[str, Any], path: Path) -> None:
    write_atomic(path, json.dumps(doc))


def merge(spec: CaptureSpec, records: dict[str, dict[str, Any]], *, started: str,
          duration_s: float) -> Result:
    """The records of one run (name -> record) as one Result."""
    device = next((r["info"]["device"] for r in records.values()), "cpu")
    result = Result(
        spec={"workload": spec.shell(), "kind": "capture", "command": list(spec.command),
              "warmup": spec.warmup, "steps": spec.steps, "step_on": spec.step_on,
              "tools": list(spec.tools), "profile_windows": spec.profile_windows,
              "profile_steps": spec.profile_steps, "ranks": len(records)},
        plan={}, machine=Environment.capture(torch.device(device)), variants=list(records),
        status={}, created=started, duration_s=duration_s)
    for name, rec in records.items():
        info = rec["info"]
        result.info[name] = info
        timings = [Timing.from_dict(t) for t in rec["measure"]]
        if timings:
            result.rounds[name] = timings
        for tool, tt in rec.get("profiles", {}).items():
            result.profiles.setdefault(name, {})[tool] = ToolTiming(
                [Timing.from_dict(t) for t in tt["plain"]], [Timing.from_dict(t) for t in tt["tool"]])
        if rec.get("artifacts"):
            result.artifacts[name] = list(rec["artifacts"])
        failed = info.get("error") or info.get("no_step") or info.get("interrupted")
        result.status[name] = "failed" if failed else "ok"
        if failed:
            result.reasons[name] = status_line(info)
    result.orders = []
    if any(i.get("flops_per_step") for i in result.info.values()):
        from bench.measure.footprint import machine_peak

        result.peak = machine_peak(torch.device(device), result.machine.describe())
    return result


def status_line(info: dict[str, Any]) -> str:
    if info.get("no_step"):
        return "no optimizer.step() or backward() seen: is this a training script?"
    if info.get("interrupted"):
        return f"interrupted (Ctrl-C) after {info.get('steps_seen', 0)} steps: the results are partial"
    return str(info.get("error") or "")
