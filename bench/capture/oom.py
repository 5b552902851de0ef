"""A script that ran out of memory, explained rather than relayed: the line that asked, how much
it asked for, the part of the step it was in, and what was live when it failed (parameters,
gradients, optimizer state and other tensors, found through the objects while the failing
frames still hold theirs), beside the last measured step's breakdown: what grew. On CUDA the
allocator's own snapshot is written for PyTorch's memory viewer, where its history was recorded."""

from __future__ import annotations

import os
import re
import traceback
from pathlib import Path
from typing import Any

import torch

from bench.capture.built import library_frame
from bench.measure.result import OutOfMemory

UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "KB": 2**10, "MB": 2**20,
         "GB": 2**30, "TB": 2**40}
ASKED = re.compile(r"tried to allocate ([\d.]+) ?(bytes|[KMGT]i?B)", re.IGNORECASE)
# Where in the step the failing frame was, from the torch code on the stack (innermost first).
PHASES = ((f"{os.sep}autograd{os.sep}", "backward"), (f"{os.sep}optim{os.sep}", "optimizer"),
          (f"{os.sep}utils{os.sep}data{os.sep}", "data"), (f"{os.sep}nn{os.sep}modules{os.sep}", "forward"))


LIMITS = ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_RSS")


def limits() -> dict[int, tuple[int, int]]:
    """The process's memory limits before the script runs (it runs in this process)."""
    import resource

    return {getattr(resource, name): resource.getrlimit(getattr(resource, name)) for name in LIMITS
            if hasattr(resource, name)}


def restore_limits(before: dict[int, tuple[int, int]]) -> None:
    """The limits as they were: a script that capped its address space (to fail fast, or as a
    test of it) must not leave vaebench unable to load what writes its report. A hard limit the
    script lowered cannot be raised again but by root: kept then."""
    import resource

    for which, (soft, hard) in before.items():
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            try:
                resource.setrlimit(which, (resource.getrlimit(which)[1],) * 2)
            except (ValueError, OSError):
                continue


def out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch's OutOfMemoryError (CUDA), or the CPU allocator's "can't allocate"."""
    text = str(exc)
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" \
        or "can't allocate memory" in text or "out of memory" in text.lower()


def _script_frame(tb: Any) -> tuple[str, str]:
    """The innermost frame outside torch and vaebench: ("train.py:42", "loss = model(x)")."""
    found = ("", "")
    for frame in traceback.extract_tb(tb):
        name = frame.filename
        if not library_frame(name) and not name.startswith("<"):
            found = (f"{os.path.basename(name)}:{frame.lineno}", (frame.line or "").strip())
    return found


def _phase(tb: Any) -> str:
    for frame in reversed(traceback.extract_tb(tb)):
        if f"{os.sep}torch{os.sep}" in frame.filename:
            for marker, phase in PHASES:
                if marker in frame.filename:
                    return phase
    return ""


def explain(exc: BaseException, step: int, snapshot: Path | None,
            before: dict[int, tuple[int, str]] | None = None) -> OutOfMemory:
    """Called while the exception (and so the failing frames' tensors) is still held. ``before``:
    the storages live when the memory window's step started (what outlives a step); a tensor
    alive now that was not among them is the failing step's own (its batch, outputs, the
    activations its frames hold)."""
    from bench.measure.memory import STEP, storages

    on_gpu = type(exc).__name__ == "OutOfMemoryError" or "CUDA" in str(exc)
    device = "cuda" if on_gpu and torch.cuda.is_available() else "cpu"
    live: dict[str, int] = {}
    found_parts = storages(device)
    for address, (size, part) in found_parts.items():
        if part == "other tensors" and before is not None and before.get(address) != (size, part):
            part = STEP
        live[part] = live.get(part, 0) + size
    others = {address for address, (_, part) in found_parts.items() if part in ("other tensors", STEP)}
    held: dict[str, int] = {}  # the same parts when the memory window's step started
    for size, part in (before or {}).values():
        held[part] = held.get(part, 0) + size
    asked = ASKED.search(str(exc))
    message = re.sub(r"^\[enforce fail at [^\]]*\] err == 0\. ", "", str(exc).strip().split("\n")[0])
    line, code = _script_frame(exc.__traceback__)
    phase = _phase(exc.__traceback__) if step > 0 else ""  # in setup, torch's modules are built, not run
    found = OutOfMemory(device=device, step=step, line=line, code=code, phase=phase,
                        asked=int(float(asked.group(1)) * UNITS.get(asked.group(2), 1)) if asked else None,
                        live=live, message=message[:300], largest=_largest(device, others), before=held)
    if device == "cuda" and snapshot is not None:
        found.snapshot = _snapshot(snapshot)
    return found


def record_history() -> list[Any]:
    """On CUDA, the allocator's history recorded through the warm-up, where a batch too large
    first fails (off before the measured steps, which must not pay for it): the calls that turn
    it off, [] where there is no GPU. An OOM later still gets the allocator's state, without the
    stacks of what was allocated after the warm-up."""
    if not torch.cuda.is_available():
        return []
    try:
        torch.cuda.memory._record_memory_history(max_entries=100_000)
    except (RuntimeError, AttributeError):
        return []
    return [lambda: torch.cuda.memory._record_memory_history(enabled=None)]


def _snapshot(path: Path) -> str:
    """The allocator's state and history as PyTorch's memory viewer opens it: its file name ("" where
    it could not be written)."""
    try:
        torch.cuda.memory._dump_snapshot(str(path))
    except (RuntimeError, OSError):
        return ""
    return path.name


def _largest(device: str, others: set[int], keep: int = 3) -> list[str]:
    """The largest of the other tensors alive at the failure (no parameter, gradient or optimizer
    state): "(23816, 1024) float32, 93.0 MB"."""
    import gc

    from bench.measure.memory import size_text, storage_of

    seen: dict[int, tuple[int, torch.Tensor]] = {}  # storage address -> (bytes, its widest tensor)
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.Tensor) and obj.device.type == device:
            storage = storage_of(obj)
            if storage is not None and storage.data_ptr() in others:
                size, kept = seen.get(storage.data_ptr(), (storage.nbytes(), None))
                if kept is None or obj.numel() > kept.numel():  # the whole, not a view of a slice
                    seen[storage.data_ptr()] = (size, obj)
    biggest = sorted(seen.values(), key=lambda found: found[0], reverse=True)[:keep]
    # the large ones: a label or a scalar loss beside a 16 MB batch says nothing
    biggest = [(size, t) for size, t in biggest if size >= max(biggest[0][0] / 100, 1024)]
    return [f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}, {size_text(size)}"
            + ("" if t.numel() * t.element_size() >= size else " (a view of it)") for size, t in biggest]

