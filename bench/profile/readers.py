"""Reading back what the profilers wrote, for the report: the top functions of a cProfile file
and the top operators of a Kineto trace (self time: an operator's time less the operators it
called, as torch.profiler's own tables count it)."""

from __future__ import annotations

import json
import pstats
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Function:
    name: str
    where: str  # file:line
    calls: int
    own_ms: float  # time in the function itself
    cumulative_ms: float  # with what it called


def top_functions(prof: Path, n: int = 20) -> list[Function]:
    """The ``n`` functions with the most cumulative time in a ``.prof`` file."""
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    rows = [Function(func, f"{Path(file).name}:{line}" if line else file, int(nc), tt * 1e3, ct * 1e3)
            for (file, line, func), (_, nc, tt, ct, _) in stats.items()]
    return sorted(rows, key=lambda f: f.cumulative_ms, reverse=True)[:n]


@dataclass(frozen=True)
class Operator:
    name: str
    calls: int
    self_ms: float  # host (CPU) self time, or GPU time for a kernel
    device: str  # "cpu" or "cuda"


def _self_times(events: list[dict]) -> dict[str, tuple[int, float]]:
    """name -> (calls, self microseconds) over complete events, nested per thread by time."""
    out: dict[str, tuple[int, float]] = {}
    by_thread: dict[tuple[object, object], list[dict]] = {}
    for e in events:
        by_thread.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    for evs in by_thread.values():
        evs.sort(key=lambda e: (float(e["ts"]), -float(e.get("dur", 0))))
        stack: list[list[float]] = []  # [end, children's time, index]
        own: list[float] = []
        for i, e in enumerate(evs):
            ts, dur = float(e["ts"]), float(e.get("dur", 0))
            while stack and stack[-1][0] <= ts:
                stack.pop()
            if stack:
                own[int(stack[-1][2])] -= dur
            own.append(dur)
            stack.append([ts + dur, 0.0, i])
        for e, t in zip(evs, own, strict=True):
            calls, total = out.get(e["name"], (0, 0.0))
            out[e["name"]] = (calls + 1, total + max(t, 0.0))
    return out


def top_operators(trace: Path, n: int = 20) -> list[Operator]:
    """The ``n`` operators with the most self time in a Chrome trace (``*.pt.trace.json``): host
    operators (``cpu_op``), then GPU kernels where there are some."""
    events = json.loads(trace.read_text()).get("traceEvents", [])
    complete = [e for e in events if e.get("ph") == "X" and "ts" in e and "name" in e]
    found = []
    for cat, device in (("cpu_op", "cpu"), ("kernel", "cuda")):
        times = _self_times([e for e in complete if e.get("cat") == cat])
        found += [Operator(name, calls, us / 1e3, device) for name, (calls, us) in times.items()]
    cpu = sorted((o for o in found if o.device == "cpu"), key=lambda o: o.self_ms, reverse=True)[:n]
    gpu = sorted((o for o in found if o.device == "cuda"), key=lambda o: o.self_ms, reverse=True)[:n]
    return cpu + gpu
