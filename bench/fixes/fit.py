"""``vaebench run --fit``: what batch fits. The script runs a short while at its own batch size
and at larger ones (its DataLoaders' ``batch_size`` patched before it starts: the ``batch``
patch), a process each, one after another; each process measures where its memory goes right
after its warm-up (:mod:`bench.measure.memory`), then a few steps; :mod:`bench.measure.fits`
draws the line and checks it. A size whose steps did not take the patched batch (the batches
come from another loader, or are made by hand) ends the line there, said.

A script with no DataLoader, or whose loaders take their own batch sampler, cannot have its
batch changed without editing it: the run says so after the first process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.fixes.catalogue import Fix
from bench.fixes.children import launch
from bench.measure.environment import Environment
from bench.measure.result import Measurement, Result
from bench.measure.specs import FitSpec, ScriptSpec

log = logging.getLogger("bench")


def available() -> tuple[float, str]:
    """The machine's memory a process may still take (bytes) and where the figure came from."""
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return 0.0, "the machine's available memory could not be read (/proc/meminfo)"
    return kb * 1024.0, f"MemAvailable {kb / 2**20:,.1f} GiB when the first size was measured"


def _process(spec: FitSpec, batch: int | None, tmp: Path, run: Callable[[list[str]], tuple[int, str]],
             fix: Fix | None = None) -> Measurement:
    from bench.capture.child import command

    patches = (*(fix.patches if fix else ()), *((f"batch={batch}",) if batch else ()))
    child = ScriptSpec(command=spec.command, warmup=spec.warmup, steps=spec.steps, tools=(),
                       observe_windows=0, wait=spec.wait, seed=spec.seed, plugins=spec.plugins,
                       counted=("memory",), patches=patches)
    out = tmp / f"batch-{batch or 'own'}-{len(list(tmp.iterdir()))}"
    out.mkdir(parents=True, exist_ok=True)
    code, err = run(command(child, out))
    if not (out / "run.json").is_file():
        return Measurement(name=f"batch {batch or '?'}", status="failed",
                           reason=f"the process wrote nothing (exit {code}): {err.strip()[-300:]}")
    measured = Result.load(out / "run.json").measurements[0]
    return measured


def _loader_batch(m: Measurement) -> int | None:
    loaders = [b for b in (m.process.built if m.process else []) if b.kind == "DataLoader"]
    sizes = [b.options.get("batch_size") for b in loaders]
    return next((s for s in sizes if isinstance(s, int)), None)


def run_fit(spec: FitSpec, tmp: Path, run: Callable[[list[str]], tuple[int, str]] | None = None) -> Result:
    """The processes, in order of size; the Result of kind ``fit`` (``notes['batch']`` on each)."""
    import torch

    run = run or launch
    started, begin = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    capacity, source = available()
    first = _process(spec, None, tmp, run)
    measurements, partial = [first], {}
    own = _loader_batch(first)
    if first.footprint.breakdown is None:
        partial["fit/memory"] = ("the script's step was not measured: "
                                 + (first.reason or first.footprint.breakdown_error))
    elif own is None:
        partial["fit/batch"] = ("the script's batch cannot be changed without editing it: it builds no "
                                "DataLoader with a batch_size (a loader with its own batch sampler, or "
                                "batches made by hand); only its own size was measured")
    else:
        first.notes |= {"batch": own, **_capacity(first, capacity, source)}
        _larger(spec, own, measurements, partial, tmp, run)
        if spec.fixes:
            _with_fixes(spec, own, first, measurements, partial, tmp, run)
    for m in measurements:
        fix = f" + {m.notes['fix']}" if m.notes.get("fix") else ""
        m.name = f"batch {m.notes['batch']}{fix}" if "batch" in m.notes else m.name
    device = next((m.device for m in measurements if m.samples), "cpu")
    return Result(kind="fit", spec=spec, machine=Environment.capture(torch.device(device)),
                  measurements=measurements, partial=partial, created=started,
                  duration_s=time.perf_counter() - begin)


def _with_fixes(spec: FitSpec, own: int, first: Measurement, measurements: list[Measurement],
                partial: dict[str, str], tmp: Path, run: Callable[[list[str]], tuple[int, str]]) -> None:
    """Each fix asked for (--fixes: catalogue entries, as --try proposes them from what the
    script built) at the script's batch and twice it: the batch it lets through."""
    from bench.fixes import catalogue

    fixes, skipped = catalogue.propose(catalogue.Seen.of(first), list(spec.fixes))
    partial |= {f"fit/{name}": why for name, why in skipped.items()}
    for fix in fixes:
        for size in (own, own * 2):
            log.info("--fit: batch %d with %s", size, fix.name)
            m = _process(spec, size, tmp, run, fix)
            m.notes |= {"batch": size, "fix": fix.name}
            if m.status != "ok" or m.footprint.breakdown is None:
                partial[f"fit/{fix.name}"] = m.reason or m.footprint.breakdown_error or "not measured"
                break
            measurements.append(m)


def _capacity(first: Measurement, available_bytes: float, source: str) -> dict[str, float | str]:
    """What the tensors may use: on a GPU its capacity less what its allocator reserved beyond
    what it allocated (its slack); on the CPU what the machine had available less what the
    process holds besides its tensors (the interpreter, torch's libraries)."""
    found = first.footprint.breakdown
    assert found is not None
    if found.device == "cuda" and found.cuda.get("capacity"):
        slack = found.cuda.get("max_reserved", 0) - found.cuda.get("max_allocated", 0)
        return {"capacity": found.cuda["capacity"] - slack,
                "capacity_source": f"the GPU's {found.cuda['capacity'] / 2**30:,.1f} GiB less its "
                                   f"allocator's slack of {slack / 2**30:,.2f} GiB (the CUDA context "
                                   "not counted)"}
    overhead = max((first.footprint.max_rss_mb or 0) * 2**20 - found.peak, 0.0)
    return {"capacity": available_bytes - overhead,
            "capacity_source": f"{source}, less the {overhead / 2**30:,.2f} GiB the process holds besides "
                               "its tensors"}


def _larger(spec: FitSpec, own: int, measurements: list[Measurement], partial: dict[str, str], tmp: Path,
            run: Callable[[list[str]], tuple[int, str]]) -> None:
    """The larger sizes: the line's second point, then the check -- only where the line says the
    check's size fits (a process must not be run out of memory on purpose)."""
    from bench.measure.fits import line

    capacity = measurements[0].notes["capacity"]
    for k, factor in enumerate(spec.factors):
        size = own * factor
        if k == 1:
            peaks = [m.footprint.breakdown.peak for m in measurements[:2] if m.footprint.breakdown]
            fixed, per = line((own, own * spec.factors[0]), (peaks[0], peaks[1]))
            need = fixed + per * size
            if need > capacity:
                partial["fit/check"] = (f"batch {size} would not fit ({need / 2**30:,.1f} GiB by the line): "
                                        "the line was not checked at a third size")
                return
        log.info("--fit: batch %d (x%d of the script's own %d)", size, factor, own)
        m = _process(spec, size, tmp, run)
        m.notes["batch"] = size
        if m.status != "ok" or m.footprint.breakdown is None:
            partial[f"fit/batch {size}"] = m.reason or m.footprint.breakdown_error or "not measured"
            return
        first = measurements[0]
        if first.batch_size and m.batch_size != first.batch_size * factor:
            partial[f"fit/batch {size}"] = (f"the step's samples did not follow the DataLoader's "
                                            f"batch_size ({m.batch_size} a step at batch_size {size}, "
                                            f"{first.batch_size} at {own}): its batches come from "
                                            "elsewhere; no line")
            return
        measurements.append(m)
