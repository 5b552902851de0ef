"""One step's allocations and frees replayed (:mod:`bench.measure.memory` records them): the peak
of live bytes, what is live at that moment split by what each block is (a parameter, gradient,
optimizer state or other tensor by the objects; an activation from its saving to the end of the
backward node that last read it; a temporary otherwise), the most saved for backward at once,
and the curve of live bytes through the step."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

from bench.measure.result import Breakdown

MEMORY_PARTS = ("parameters", "gradients", "optimizer state", "activations", "other tensors", "temporaries")
CURVE = 240  # points of the live-memory curve kept


@dataclass
class Block:
    address: int
    size: int
    born: float  # profiler time (us); -inf: live when the step started
    died: float = float("inf")
    part: str = ""  # parameters, gradients, optimizer state, other tensors (live at the start)
    saved: float = float("inf")  # first saved for backward
    read: float = float("-inf")  # the end of the backward node that last read it back

    def holds_saved(self, time: float) -> bool:
        """Saved for backward at ``time``: from its saving to the end of the backward node that
        last read it (to its end, unread). After that node it is no activation: a batch the
        script still holds is the batch."""
        return self.saved <= time and (time <= self.read or self.read < self.saved)


def _node_ends(spans: list[tuple[float, float, str]]) -> Callable[[float], float]:
    """The end of the innermost backward node running at a time (the time itself outside any)."""
    nodes = sorted((s, e) for s, e, name in spans if name == "backward")
    starts = [s for s, _ in nodes]

    def end(time: float) -> float:
        k = bisect.bisect_right(starts, time) - 1
        while k >= 0:  # nested nodes start later and end sooner: the first that holds it is innermost
            if nodes[k][1] >= time:
                return nodes[k][1]
            k -= 1
        return time
    return end


def replay(start: dict[int, tuple[int, str]], events: list[tuple[float, int, int]],
           saved: list[tuple[float, int]], end: dict[int, tuple[int, str]],
           spans: list[tuple[float, float, str]] | None = None) -> Breakdown:
    """The step replayed: ``start`` live at its start, ``events`` (time, address, +bytes or -bytes)
    in time order, ``saved`` (time, storage address) seen by the pack hook, ``end`` live at its
    end; ``spans`` (start, end, part) say where the peak fell."""
    live = {a: Block(a, size, float("-inf"), part=part) for a, (size, part) in start.items()}
    blocks = list(live.values())
    total = peak = sum(b.size for b in blocks)
    peak_time = float("-inf")
    trace: list[tuple[float, int]] = []  # (time, live bytes) after each event
    for time, address, size in events:
        if size > 0:
            live[address] = block = Block(address, size, time)
            blocks.append(block)
            total += size
            if total > peak:
                peak, peak_time = total, time
        elif address in live:  # a free of a block allocated before the priming step is not reported
            block = live.pop(address)
            block.died = time
            total -= block.size
        trace.append((time, total))
    for block in live.values():  # alive at the end: a gradient or optimizer state by what it then is
        if not block.part:
            block.part = _kept(end, block.address)
    by_address: dict[int, list[Block]] = {}
    for block in blocks:
        by_address.setdefault(block.address, []).append(block)
    node_end = _node_ends(spans or [])
    for time, address, packed in saved:
        block = next((b for b in by_address.get(address, []) if b.born <= time < b.died), None)
        if block is not None and packed:
            block.saved = min(block.saved, time)
        elif block is not None:
            block.read = max(block.read, node_end(time))
    at_peak = [b for b in blocks if b.born <= peak_time < b.died]
    parts = {p: 0 for p in MEMORY_PARTS}
    for block in at_peak:
        parts[block.part or ("activations" if block.holds_saved(peak_time) else "temporaries")] += block.size
    where = next((name for s, e, name in spans or [] if s <= peak_time <= e), "")
    floor = sum(b.size for b in blocks if b.born == float("-inf") and b.died == float("inf"))
    curve, phases = _curve(trace, spans or [], floor)
    return Breakdown(peak=int(peak), parts=parts, at=where, saved_max=_saved_max(blocks), curve=curve,
                     phases=phases, floor=floor)


def _curve(trace: list[tuple[float, int]], spans: list[tuple[float, float, str]], floor: int
           ) -> tuple[list[float], list[tuple[int, int, str]]]:
    """Live MB through the step above ``floor`` (what stays through it: parameters, optimizer
    state, a data set), on CURVE points of equal time (each the most of its stretch), and where
    data, forward, backward and the optimizer ran on that axis (consecutive spans merged)."""
    if len(trace) < 2:
        return [], []
    t0, t1 = trace[0][0], trace[-1][0]
    width = (t1 - t0) / (CURVE - 1) or 1.0
    curve: list[float | None] = [None] * CURVE
    for time, total in trace:
        k = min(int((time - t0) / width), CURVE - 1)
        curve[k] = max(curve[k] or 0.0, (total - floor) / 2**20)
    last = 0.0
    for k, value in enumerate(curve):  # a stretch with no event holds the level before it
        last = curve[k] = value if value is not None else last
    phases: list[tuple[int, int, str]] = []
    for start, end, name in sorted(spans):
        first, stop = max(int((start - t0) / width), 0), min(int((end - t0) / width), CURVE - 1)
        if phases and phases[-1][2] == name and first <= phases[-1][1] + 1:
            phases[-1] = (phases[-1][0], max(phases[-1][1], stop), name)
        elif stop >= first and end >= t0:
            phases.append((first, stop, name))
    return [float(v or 0.0) for v in curve], phases


def _kept(end: dict[int, tuple[int, str]], address: int) -> str:
    part = end.get(address, (0, ""))[1]
    return part if part in ("parameters", "gradients", "optimizer state") else ""


def _saved_max(blocks: list[Block]) -> int:
    held = [(b.saved, min(b.read, b.died) if b.read >= b.saved else b.died, b.size)
            for b in blocks if not b.part and b.saved < float("inf")]
    edges = sorted([(s, size) for s, _, size in held] + [(e, -size) for _, e, size in held])
    total = most = 0
    for _, size in edges:
        total += size
        most = max(most, total)
    return most
