"""What a step costs besides time: its FLOPs, its peak memory, and the machine's peak FLOP/s
that model FLOP utilization (MFU = achieved FLOP/s / peak) is measured against.

- **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` over one whole step (forward, loss,
  backward, optimizer). It counts matrix multiplications and convolutions (2*M*N*K each), not
  elementwise work: the figure is the model's arithmetic, as MFU wants it.
- **Peak memory of a step**: on CUDA ``max_memory_allocated``/``max_memory_reserved`` reset
  around one step; on the CPU the peak of live bytes PyTorch's allocator reported during one
  profiled step (``profile_memory=True``; allocations and frees in time order), plus the
  process's max RSS.
- **Peak FLOP/s**: on the CPU a large float32 matmul, measured once per machine (CPU model,
  threads, torch) and cached under ``~/.cache/vaebench``; on a GPU the datasheet peak of the
  device (a small table) with the measured matmul peak beside it. The report says which.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import time
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
MATMUL_N = 2048
CACHE = Path(os.environ.get("VAEBENCH_CACHE", Path.home() / ".cache" / "vaebench"))


def flops_of(fn: Any) -> int:
    """FLOPs of one call of ``fn`` (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def peak_bytes_of(fn: Any, device: torch.device) -> int:
    """The peak of live bytes allocated during one call of ``fn`` (above what was live before)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    from bench.measure.quiet import without_profiler_chatter

    # The profiler remembers the sizes of every block allocated under any earlier profiling
    # session in this process; the cyclic collector freeing such garbage inside ``fn`` would
    # subtract bytes the step never held (a CI run lost a 400x400 weight of an earlier test). So
    # collect first and keep the collector off for the one call.
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        with without_profiler_chatter(), \
                profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    finally:
        if enabled:
            gc.enable()
    # Each operator's own allocations minus frees, in time order: the running sum's maximum is
    # the step's peak of live bytes (at operator granularity).
    events = sorted((e for e in prof.events() if e.cpu_memory_usage or e.self_cpu_memory_usage),
                    key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return int(peak)


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _matmul_peak(device: torch.device, n: int = MATMUL_N, repeats: int = 5) -> float:
    """The best FLOP/s of an n x n float32 matmul on ``device`` (a few repeats, after a warm-up)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = 0.0
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        if i:  # the first is the warm-up
            best = max(best, 2 * n**3 / seconds)
    return best


def machine_peak(device: torch.device, describe: str, at_least: float = 0.0) -> dict[str, Any]:
    """The peak FLOP/s MFU is measured against, and where it came from (cached per machine).

    ``at_least``: FLOP/s a real step reached in this run. A cached peak below it was measured
    while the machine was busy, and is no peak: it is measured again (the larger one is kept).
    """
    key = f"{describe}|{torch.__version__}|{torch.get_num_threads()}".replace("/", "_")
    cache = CACHE / "peak.json"
    try:
        known = json.loads(cache.read_text()) if cache.is_file() else {}
    except (OSError, json.JSONDecodeError):
        known = {}
    if key in known and known[key].get("measured_flops", 0) >= at_least:
        return {**known[key], "cached": True}
    measured = max(_matmul_peak(device), known.get(key, {}).get("measured_flops", 0.0))
    entry: dict[str, Any] = {"measured_flops": measured, "flops": measured,
                             "source": f"measured: a {MATMUL_N}x{MATMUL_N} float32 matmul, best of 5"}
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
