"""Where a step's memory goes: the live tensor bytes at the step's peak, split into parameters,
gradients, optimizer state, activations saved for backward, other tensors that outlive the step
(a data set held as a tensor, buffers, a batch kept from the step before) and temporaries.

Measured over two steps under ``torch.profiler`` with ``profile_memory`` (the allocator reports
each allocation and free with its address, in time order): the first primes it (the profiler
sees only the frees of blocks it saw allocated: a step's batch, activations and set-to-none
gradients are allocated anew each step, so the second step's frees are all seen), the second
is read.

- What is live when the second step starts, found through the objects (the garbage
  collector's list: every parameter, its ``.grad``, every optimizer's state, every other
  tensor), each storage counted once (tied weights, views): the parts are exact.
- The step's allocations and frees replayed from there: the peak is the largest sum of live
  bytes (operator granularity), and what is live at that moment is split by what each block
  is: a gradient or optimizer state if it is one when the step ends; an activation if a
  ``saved_tensors_hooks`` pack hook saw its storage saved for backward while it lived (the
  hook marks the profiler's timeline and returns the tensor as it is); else a temporary.
  By construction the parts sum to the peak.
- On CUDA the same for the device's blocks, and the allocator's own figures beside them:
  ``max_memory_allocated`` over the step (which the replay must agree with), reserved against
  allocated, the device's capacity.

A tensor whose memory the allocator did not give (``torch.from_numpy``) is counted where it is
live at the start, and unseen when made inside the step.
"""

from __future__ import annotations

import bisect
import gc
import json
import os
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.measure.result import Breakdown

PARTS = ("parameters", "gradients", "optimizer state", "activations", "other tensors", "temporaries")
OBJECTS = ("parameters", "gradients", "optimizer state", "other tensors")  # the parts the objects show
CURVE = 240  # points of the live-memory curve kept
MARK = "vaebench.memory"  # record_function names: the step's start and end, and each saved storage


def _reachable(roots: list[Any], limit: int = 500_000) -> list[Any]:
    """The objects reachable from ``roots`` (not through classes, modules or functions' globals:
    one engine variant's model, optimizer and data, not the other variants built beside it)."""
    seen: dict[int, Any] = {}
    todo = list(roots)
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type | types.ModuleType | types.FunctionType):
            continue
        seen[id(obj)] = obj
        todo.extend(gc.get_referents(obj))
    return list(seen.values())


def storages(device_type: str, roots: list[Any] | None = None) -> dict[int, tuple[int, str]]:
    """Every live storage on ``device_type`` (or every one reachable from ``roots``): address ->
    (bytes, part), each storage once, by the first part that holds it (a weight the optimizer
    also keeps is a parameter)."""
    params: list[torch.Tensor] = []
    optimizers: list[Any] = []
    tensors: list[torch.Tensor] = []
    for obj in gc.get_objects() if roots is None else _reachable(roots):
        kind = type(obj)
        if issubclass(kind, torch.nn.Parameter):  # not isinstance: a module's __getattr__ warns
            params.append(obj)
        elif issubclass(kind, torch.Tensor):
            tensors.append(obj)
        elif issubclass(kind, torch.optim.Optimizer):
            optimizers.append(obj)
    found: dict[int, tuple[int, str]] = {}

    def add(tensor: Any, part: str) -> None:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type != device_type:
            return
        address, size = _storage(tensor)
        if address and address not in found:
            found[address] = (size, part)

    for p in params:
        add(p, "parameters")
    for p in params:
        add(p.grad, "gradients")
    for optimizer in optimizers:
        for state in optimizer.state.values():
            for value in state.values():
                add(value, "optimizer state")
    for tensor in tensors:
        add(tensor, "other tensors")
        if tensor.is_leaf:  # a non-leaf's .grad is never filled (and reading it warns)
            add(tensor.grad, "gradients")
    return found


def _storage(tensor: torch.Tensor) -> tuple[int, int]:
    """(address, bytes) of a tensor's storage; (0, 0) where it has none of its own: a sparse or
    meta tensor, a FakeTensor left by ``torch.compile``, a subclass that wraps others."""
    if tensor.is_sparse or tensor.is_meta:
        return 0, 0
    try:
        storage = tensor.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except (RuntimeError, NotImplementedError, TypeError):
        return 0, 0


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
    parts = {p: 0 for p in PARTS}
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


class StepMemory:
    """The capture over two steps: ``start()`` before the priming step, ``between()`` after it,
    ``end()`` after the measured step, ``stop()`` -> :class:`Breakdown` (None, with ``error``,
    where the profiler's trace could not be read)."""

    def __init__(self, device: torch.device, roots: list[Any] | None = None) -> None:
        self.device = device
        self.roots = roots  # the objects whose tensors count (None: the whole process's)
        self.profiler: Any = None
        self.hooks: Any = None
        self.first: dict[int, tuple[int, str]] = {}
        self.last: dict[int, tuple[int, str]] = {}
        self.error = ""
        self.cuda: dict[str, float] = {}
        self.collector = False  # the cyclic collector was on before the measured step
        self.ended = False  # the measured step ended

    def start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        self.profiler = profile(activities=activities, profile_memory=True)
        self.profiler.__enter__()

    def between(self) -> None:
        # Garbage freed by the cyclic collector inside the step would be a free of a block live at
        # its start (a CI run once lost an earlier test's weight that way): collect it before,
        # and keep the collector off for the one step.
        gc.collect()
        self.collector = gc.isenabled()
        gc.disable()
        self.first = storages(self.device.type, self.roots)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.cuda["allocated_at_start"] = torch.cuda.memory_allocated(self.device)
        _mark("start")
        self.hooks = torch.autograd.graph.saved_tensors_hooks(_pack, _unpack)
        self.hooks.__enter__()

    def end(self) -> None:
        self._restore()
        _mark("end")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            total = torch.cuda.mem_get_info(self.device)[1]
            self.cuda |= {"max_allocated": torch.cuda.max_memory_allocated(self.device),
                          "max_reserved": torch.cuda.max_memory_reserved(self.device), "capacity": total}
        self.last = storages(self.device.type, self.roots)
        self.ended = True

    def _restore(self) -> None:
        if self.hooks is not None:
            self.hooks.__exit__(None, None, None)
            self.hooks = None
        if self.collector:
            gc.enable()
            self.collector = False

    def rise(self, found: Breakdown) -> int:
        """The peak above what was live when the step started (the allocator's own on CUDA)."""
        if "max_allocated" in self.cuda:
            return int(self.cuda["max_allocated"] - self.cuda["allocated_at_start"])
        return found.peak - sum(size for size, _ in self.first.values())

    def stop(self) -> Breakdown | None:
        self._restore()  # the script ended inside the measured step: hooks off, the collector back
        if self.profiler is None:
            return None
        from bench.measure.quiet import without_profiler_chatter

        profiler, self.profiler = self.profiler, None
        with without_profiler_chatter():
            profiler.__exit__(None, None, None)
        if not self.ended:
            self.error = "the script ended before the memory window's second step"
            return None
        fd, path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        try:
            profiler.export_chrome_trace(path)
            with open(path) as f:
                trace = json.load(f).get("traceEvents", [])
        except (OSError, ValueError) as exc:
            self.error = f"the profiler's trace could not be read ({exc})"
            return None
        finally:
            os.unlink(path)
        events, saved, spans = _read(trace, 1 if self.device.type == "cuda" else 0)
        found = replay(self.first, events, saved, self.last, spans)
        found.device, found.cuda = self.device.type, self.cuda
        return found


def _mark(name: str) -> None:
    with torch.profiler.record_function(f"{MARK}.{name}"):
        pass


def _pack(tensor: torch.Tensor) -> torch.Tensor:
    """A storage saved for backward: marked on the profiler's timeline, the tensor kept as it is."""
    address = _storage(tensor)[0]
    if address:
        _mark(f"saved:{address}")
    return tensor


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    """Read back in backward: a storage's last read ends its life as an activation (a batch the
    script still holds after backward is the batch, not an activation)."""
    address = _storage(tensor)[0]
    if address:
        _mark(f"unpacked:{address}")
    return tensor


def _read(trace: list[dict[str, Any]], device_type: int) -> tuple[list[Any], list[Any], list[Any]]:
    """From the profiler's trace, within the measured step: (memory events, saved storages, spans)."""
    marks = {e["name"].rsplit(".", 1)[-1]: e["ts"] for e in trace
             if str(e.get("name", "")).startswith(f"{MARK}.") and ":" not in e["name"]}
    begin, finish = marks.get("start", float("-inf")), marks.get("end", float("inf"))
    events, saved, spans = [], [], []
    for e in trace:
        name, ts = str(e.get("name", "")), e.get("ts")
        if ts is None or not begin <= ts <= finish:
            continue
        args = e.get("args", {})
        if name == "[memory]" and args.get("Device Type") == device_type:
            events.append((ts, int(args["Addr"]), int(args["Bytes"])))
        elif name.startswith((f"{MARK}.saved:", f"{MARK}.unpacked:")):
            saved.append((ts, int(name.rsplit(":", 1)[1]), name.startswith(f"{MARK}.saved:")))
        elif name.startswith("Optimizer.step#"):
            spans.append((ts, ts + e.get("dur", 0), "optimizer"))
        elif name.startswith("autograd::engine::evaluate_function"):
            spans.append((ts, ts + e.get("dur", 0), "backward"))
        elif name.startswith("enumerate(DataLoader)"):
            spans.append((ts, ts + e.get("dur", 0), "data"))
    events.sort()
    first_backward = min((s for s, _, part in spans if part == "backward"), default=finish)
    loaded = max((e for s, e, part in spans if part == "data" and e <= first_backward), default=begin)
    spans.append((loaded, first_backward, "forward"))
    return events, saved, spans



STEP = "the step's own"  # at an out-of-memory: tensors alive that were not before the step


def grown(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """The parts found through the objects that hold more when the script failed than at the
    measured step's peak (the failing step's own tensors have no like at a peak: its batch says
    what grew there)."""
    return {p: now[p] - before.get(p, 0) for p in OBJECTS if now.get(p, 0) > before.get(p, 0)}
