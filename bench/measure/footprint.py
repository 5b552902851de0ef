"""What a step costs besides time: its FLOPs, its peak memory, and the machine's peak FLOP/s
that model FLOP utilization (MFU = achieved FLOP/s / peak) is measured against.

- **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` over one whole step (forward, loss,
  backward, optimizer). It counts matrix multiplications and convolutions (2*M*N*K each), not
  elementwise work: the figure is the model's arithmetic, as MFU wants it.
- **Peak memory of a step**: where it goes, and its peak above what was live at its start,
  in :mod:`bench.measure.memory`; here the process's max RSS.
- **Peak FLOP/s**: on the CPU the best of float32 matmuls of three sizes repeated for a few
  seconds, measured when nothing of the run is running, once per machine (CPU model, threads,
  torch) and cached under ``~/.cache/vaebench``, again when a step comes within reach of it; on
  a GPU the datasheet peak of the device (a small table). The report says which, and when.
  An MFU above 100% is never stated (:func:`bench.measure.derive.mfu`).
"""

from __future__ import annotations

import json
import os
import resource
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from plumbing.files import write_atomic

# Dense datasheet peaks, TFLOP/s (no sparsity): fp32, tf32 (tensor cores), bf16.
DATASHEET = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},  # SXM
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0},
    "T4": {"fp32": 8.1, "tf32": 8.1, "bf16": 65.0},  # T4 has no tf32/bf16 units: fp32 / fp16 figures
}
CACHE = Path(os.environ.get("VAEBENCH_CACHE", Path.home() / ".cache" / "vaebench"))


def flops_of(fn: Any) -> int:
    """FLOPs of one call of ``fn`` (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def process_memory() -> tuple[float, float | None]:
    """The process's peak resident memory (MB) and, where CUDA ran, the allocator's max
    allocated over the whole process (MB)."""
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return rss, torch.cuda.max_memory_allocated() / 2**20
    return rss, None


PEAK_SIZES = (512, 1024, 2048)  # matmul sizes: the best of them (a cache-friendly size may win)
PEAK_SECONDS = 3.0  # how long the peak is measured for: repeats until then, the best one kept
REACH = 0.8  # a step within this share of the cached peak has it measured again


def _matmul_peak(device: torch.device, seconds: float = PEAK_SECONDS) -> tuple[float, int]:
    """The best FLOP/s of float32 matmuls of each of PEAK_SIZES on ``device``, repeated for about
    ``seconds`` (after a warm-up of each): (FLOP/s, matmuls timed)."""
    pairs = {n: (torch.randn(n, n, device=device), torch.randn(n, n, device=device)) for n in PEAK_SIZES}
    for a, b in pairs.values():
        a @ b  # warm-up: the first call of a size pays for its buffers
    best, timed, end = 0.0, 0, time.perf_counter() + seconds
    while time.perf_counter() < end or timed < 3 * len(PEAK_SIZES):
        for n, (a, b) in pairs.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
            timed += 1
    return best, timed


def _threads() -> str:
    n = torch.get_num_threads()
    return f"{n} thread{'s' if n != 1 else ''}"


def machine_peak(device: torch.device, describe: str, at_least: float = 0.0) -> dict[str, Any]:
    """The peak FLOP/s MFU is measured against, and where and when it came from (cached per
    machine, threads and torch). Call it when nothing of the run is running (before the script
    starts or after it ended, never beside its DataLoader workers).

    ``at_least``: the FLOP/s a real step reached in this run. A cached peak that a step comes
    within REACH of was likely measured while the machine was busy: it is measured again now
    (the larger of the two is kept: a peak is a maximum).
    """
    key = f"{describe}|{torch.__version__}|{torch.get_num_threads()}".replace("/", "_")
    cache = CACHE / "peak.json"
    try:
        known = json.loads(cache.read_text()) if cache.is_file() else {}
    except (OSError, json.JSONDecodeError):
        known = {}
    old = known.get(key, {})
    if key in known and old.get("measured_flops", 0) * REACH >= at_least and old.get("measured_at"):
        return {**old, "cached": True}
    measured, timed = _matmul_peak(device)
    entry = old if old.get("measured_at") and old.get("measured_flops", 0) >= measured else {
        "measured_flops": measured, "flops": measured,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": (f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with nothing of the run running: the "
                   f"best of {timed} float32 matmuls of {', '.join(map(str, PEAK_SIZES))} over "
                   f"{PEAK_SECONDS:g} s, {_threads()}")}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        sheet = next((v for k, v in DATASHEET.items() if k in name), None)
        if sheet is not None:
            entry |= {"flops": sheet["fp32"] * 1e12,
                      "source": f"datasheet fp32 peak of the {name} ({sheet['fp32']:g} TFLOP/s)"}
    known[key] = entry
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, json.dumps(known, indent=1))
    except OSError:
        pass  # an unwritable cache costs a re-measurement next time, nothing else
    return {**entry, "cached": False}
