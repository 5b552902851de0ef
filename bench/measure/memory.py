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
- The step's allocations and frees replayed from there (:mod:`bench.measure.replay`): the peak
  is the largest sum of live bytes (operator granularity), and what is live at that moment is
  split by what each block is: a gradient or optimizer state if it is one when the step ends;
  an activation from the moment a ``saved_tensors_hooks`` pack hook saw its storage saved for
  backward to the end of the backward node that last read it (the hooks mark the profiler's
  timeline; the pack hook returns the tensor detached: the same storage); else a temporary.
  By construction the parts sum to the peak. Where the script has saved-tensor hooks of its
  own, or calls ``torch.func`` (which runs under none), ours stand aside and the breakdown says
  that activations were not told apart.
- On CUDA the same for the device's blocks, and the allocator's own figures beside them:
  ``max_memory_allocated`` over the step (a replay that differs from it by more than 5% is
  said to be approximate), reserved against allocated, the device's capacity.

A tensor whose memory the allocator did not give (``torch.from_numpy``) is counted where it is
live at the start, and unseen when made inside the step.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import types
from typing import Any

import torch

from bench.measure.replay import MEMORY_PARTS, replay
from bench.measure.result import Breakdown

__all__ = ["MEMORY_PARTS", "OBJECTS", "StepMemory", "grown", "replay", "size_text", "storage_of", "storages"]

OBJECTS = ("parameters", "gradients", "optimizer state", "other tensors")  # the parts the objects show
MARK = "vaebench.memory"  # record_function names: the step's start and end, and each saved storage


def size_text(n: float) -> str:
    """Bytes as the reports say them: "1.5 GB", "93.0 MB", "512.0 KB", "4 bytes"."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} bytes"


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
    into = {torch.nn.Parameter: params, torch.Tensor: tensors, torch.optim.Optimizer: optimizers}
    # Each object's type looked up once per type: a process holds ~500k objects from its imports
    # alone, and three issubclass calls on each were most of a window's cost (0.27 s a call).
    sorted_by: dict[type, list[Any] | None] = {}
    for obj in gc.get_objects() if roots is None else _reachable(roots):
        kind = type(obj)
        if kind not in sorted_by:  # not isinstance: a module's __getattr__ warns
            sorted_by[kind] = next((into[base] for base in into if issubclass(kind, base)), None)
        if (bucket := sorted_by[kind]) is not None:
            bucket.append(obj)
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


def storage_of(tensor: torch.Tensor) -> Any:
    """A tensor's storage (its Python object lives as long as the storage), or None where it has
    none of its own: a sparse, meta or nested tensor, a FakeTensor left by ``torch.compile``, an
    UninitializedParameter, a subclass that wraps others."""
    try:
        if tensor.is_sparse or tensor.is_meta:
            return None
        storage = tensor.untyped_storage()
        return storage if storage.data_ptr() else None
    except Exception:  # each kind above raises its own (RuntimeError, ValueError, NotImplementedError)
        return None


def _storage(tensor: torch.Tensor) -> tuple[int, int]:
    """(address, bytes) of a tensor's storage; (0, 0) where it has none of its own."""
    storage = storage_of(tensor)
    return (storage.data_ptr(), storage.nbytes()) if storage is not None else (0, 0)


class SavedHooks:
    """The pack/unpack hooks of the read step, out of the script's way: not pushed where the
    script has its own active at the step's start (ours would replace them for the step:
    ``save_on_cpu`` would stop offloading), taken off where ``torch.func`` asks for none (it
    refuses to run under any). Either way the step runs as it would; only its activations are
    then not told from its temporaries (``lost`` says why)."""

    def __init__(self) -> None:
        self.on = False
        self.lost = ""
        self._disable: Any = None

    def push(self) -> None:
        autograd = torch._C._autograd
        if autograd._top_saved_tensors_default_hooks(False) is not None:
            self.lost = "the script's own saved-tensor hooks were active"
            return
        autograd._push_saved_tensors_default_hooks(_pack, _unpack)
        self.on, graph, hooks = True, torch.autograd.graph, self
        self._disable = original = graph.disable_saved_tensors_hooks

        def disable(message: str) -> Any:  # torch.func's transforms: our hooks off before theirs
            hooks.pop("torch.func ran in the step (it runs under no saved-tensor hooks)")
            return original(message)

        graph.disable_saved_tensors_hooks = disable

    def pop(self, why: str = "") -> None:
        if self._disable is not None:
            torch.autograd.graph.disable_saved_tensors_hooks = self._disable
            self._disable = None
        if not self.on:
            return
        self.on = False
        top = torch._C._autograd._top_saved_tensors_default_hooks(False)
        if top is not None and top[0] is _pack:
            torch._C._autograd._pop_saved_tensors_default_hooks()
            self.lost = self.lost or why
        else:  # the script pushed hooks of its own over ours and left them: not ours to pop
            self.lost = "the script's own saved-tensor hooks were left on over ours"


class StepMemory:
    """The capture over two steps: ``start()`` before the priming step, ``between()`` after it,
    ``end()`` after the measured step, ``stop()`` -> :class:`Breakdown` (None, with ``error``,
    where the profiler's trace could not be read)."""

    def __init__(self, device: torch.device, roots: list[Any] | None = None) -> None:
        self.device = device
        self.roots = roots  # the objects whose tensors count (None: the whole process's)
        self.profiler: Any = None
        self.hooks = SavedHooks()
        self.first: dict[int, tuple[int, str]] = {}
        self.last: dict[int, tuple[int, str]] = {}
        self.error = ""
        self.cuda: dict[str, float] = {}
        self.collector = False  # the cyclic collector was on before the measured step
        self.ended = False  # the measured step ended

    def start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        # CPU activity only, on a GPU too: the allocator's events are recorded either way, and CUPTI
        # brought up for CUDA activity can slow the process after it (the allocator's own peak
        # is checked against the replay's: :meth:`stop`)
        self.profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self.profiler.__enter__()

    def between(self) -> None:
        # Garbage freed by the cyclic collector inside the step would be a free of a block live at
        # its start (a CI run once lost an earlier test's weight that way): collect it before,
        # and keep the collector off for the one step. A full collection (0.3 s of a process
        # holding torch's ~500k objects): a dead model left in a cycle in the old generation would
        # otherwise be read as the script's parameters and optimizer state.
        gc.collect()
        self.collector = gc.isenabled()
        gc.disable()
        self.first = storages(self.device.type, self.roots)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.cuda["allocated_at_start"] = torch.cuda.memory_allocated(self.device)
        _mark("start")
        self.hooks.push()

    def end(self) -> None:
        self.release()
        _mark("end")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            total = torch.cuda.mem_get_info(self.device)[1]
            self.cuda |= {"max_allocated": torch.cuda.max_memory_allocated(self.device),
                          "max_reserved": torch.cuda.max_memory_reserved(self.device), "capacity": total}
        self.last = storages(self.device.type, self.roots)
        self.ended = True

    def release(self) -> None:
        """Our hooks off and the collector back on (idempotent: the step ended, or the script did)."""
        self.hooks.pop()
        if self.collector:
            gc.enable()
            self.collector = False

    def rise(self, found: Breakdown) -> int:
        """The peak above what was live when the step started (the allocator's own on CUDA)."""
        if "max_allocated" in self.cuda:
            return int(self.cuda["max_allocated"] - self.cuda["allocated_at_start"])
        return found.peak - sum(size for size, _ in self.first.values())

    def stop(self) -> Breakdown | None:
        self.release()  # the script ended inside the measured step: hooks off, the collector back
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
        found.rise = self.rise(found)
        found.caveat = _caveat(found, self.hooks.lost)
        return found


def _caveat(found: Breakdown, lost: str) -> str:
    """What limits the breakdown: activations not told apart, or a replay the CUDA allocator's
    own peak does not confirm (the parts are then approximate)."""
    said = [f"activations are not told from temporaries: {lost}"] if lost else []
    allocated = found.cuda.get("max_allocated")
    if allocated and abs(found.peak - allocated) > 0.05 * allocated:
        said.append(f"the replay's peak ({found.peak / 2**20:,.1f} MB) is not the allocator's own "
                    f"({allocated / 2**20:,.1f} MB): the parts are approximate")
    return "; ".join(said)


def _mark(name: str) -> None:
    with torch.profiler.record_function(f"{MARK}.{name}"):
        pass


def _pack(tensor: torch.Tensor) -> torch.Tensor:
    """A storage saved for backward: marked on the profiler's timeline, the tensor kept as it is."""
    address = _storage(tensor)[0]
    if address:
        _mark(f"saved:{address}")
    # detached: the same storage and version, without the output -> grad_fn -> output cycle that
    # would keep a graph never run backward alive for good
    return tensor.detach()


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
