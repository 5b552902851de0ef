"""``ranks.trace.json``: every rank of a run in one Chrome trace (Perfetto, ``chrome://tracing``).

One process per rank (named with its node and local rank), on one clock -- each rank's
timeline shifted by its offset from :mod:`bench.ranks.align` -- with three tracks: the
steps, the parts inside them (``data``, ``forward``, ``backward``, the collectives by name ...),
and the **waits**: the stretch of each hand-called collective spent waiting for the last rank
to arrive (the collective's time less the least any rank spent in the same collective). DDP's
wait inside ``backward`` is not drawn: DDP times it as an average, not per call. Beside the
per-rank Kineto traces (``tb/``), which carry the operators and, on GPUs, the kernels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.measure.result import Result
from bench.ranks.align import Alignment, align
from plumbing.files import write_atomic

NAME = "ranks.trace.json"
STEP_TRACK, PART_TRACK, WAIT_TRACK = 0, 1, 2  # the tracks (thread ids) of each rank's process


def write(result: Result, out: Path) -> list[Path]:
    """The merged trace into ``out`` (nothing for a run of one process, or without sync points)."""
    trace = build(result)
    if trace is None:
        return []
    path = out / NAME
    write_atomic(path, json.dumps(trace, separators=(",", ":")))
    return [path]


def build(result: Result) -> dict[str, Any] | None:
    alignment = align(result)
    if alignment is None:
        return None
    names = sorted(alignment.offsets, key=lambda n: int(n[4:]))
    timelines = {n: result[n].process.timeline for n in names}  # type: ignore[union-attr]
    # Every time as seconds after the earliest step start on the reference clock.
    def shift(name: str) -> float:
        return float(timelines[name]["origin"]) + alignment.offsets[name]

    zero = min(shift(n) + float(tl["steps"][0][1]) for n, tl in timelines.items() if tl["steps"])
    events: list[dict[str, Any]] = []
    least = _least_collectives(timelines)
    for pid, name in enumerate(names):
        events += _process(result, name, pid)
        base = shift(name) - zero
        for step, start, end in timelines[name]["steps"]:
            events.append(_span(f"step {step}", "step", pid, STEP_TRACK, base + start, base + end))
        order: dict[int, int] = {}
        for step, label, start, end in timelines[name]["spans"]:
            op = label.split(":", 1)[1] if label.startswith("collective:") else None
            events.append(_span(op or label, "collective" if op else "part", pid, PART_TRACK,
                                base + start, base + end))
            if op is None:
                continue
            k = order[step] = order.get(step, -1) + 1
            waited = (end - start) - least.get((step, k), end - start)
            if waited > 0:
                events.append(_span(f"wait in {op}", "wait", pid, WAIT_TRACK, base + start,
                                    base + start + waited,
                                    {"wait_ms": round(waited * 1e3, 3)}))
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "metadata": {"clock": _clock_note(alignment), "ranks": len(names)}}


def _least_collectives(timelines: dict[str, dict]) -> dict[tuple[int, int], float]:
    """The least time any rank spent in the k-th collective of each step: the communication."""
    least: dict[tuple[int, int], float] = {}
    for tl in timelines.values():
        order: dict[int, int] = {}
        for step, label, start, end in tl["spans"]:
            if label.startswith("collective:"):
                k = order[step] = order.get(step, -1) + 1
                least[(step, k)] = min(least.get((step, k), float("inf")), end - start)
    return least


def _process(result: Result, name: str, pid: int) -> list[dict[str, Any]]:
    p = result[name].process
    label = f"{name} ({p.node}, node {p.node_rank}, local rank {p.local_rank})" if p else name
    meta = [("process_name", {"name": label}), ("process_sort_index", {"sort_index": pid})]
    events = [{"ph": "M", "name": key, "pid": pid, "args": args} for key, args in meta]
    tracks = ((STEP_TRACK, "steps"), (PART_TRACK, "parts"), (WAIT_TRACK, "waits for the other ranks"))
    for tid, track in tracks:
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": track}})
    return events


def _span(name: str, cat: str, pid: int, tid: int, start: float, end: float,
          args: dict[str, Any] | None = None) -> dict[str, Any]:
    event = {"name": name, "cat": cat, "ph": "X", "pid": pid, "tid": tid,
             "ts": round(start * 1e6, 3), "dur": round(max(end - start, 0.0) * 1e6, 3)}
    if args:
        event["args"] = args
    return event


def _clock_note(alignment: Alignment) -> str:
    return alignment.text() + f"; every time on {alignment.reference}'s clock"
