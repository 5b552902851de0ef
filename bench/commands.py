"""The ``profile``, ``report`` and ``instructions`` commands: validate, run, write through a
staging folder (profile) or atomically (the instruction counts' JSON).

Files are written into a staging folder beside ``--out`` and moved in only when complete, so
a run that fails or is interrupted half-way leaves the previous reports as they were.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.defaults import BUILTIN, BUILTIN_SUITE_VARIANTS
from bench.errors import UsageError
from bench.output import Output, writing
from plumbing.files import write_atomic
from plumbing.logs import setup_logging

log = logging.getLogger("bench")
def _device(name: str):  # -> torch.device
    from plumbing.devices import DeviceError, resolve_device

    try:
        return resolve_device(name)
    except DeviceError as exc:
        raise UsageError(str(exc)) from None


def _plan_and_tools(args: argparse.Namespace):  # -> tuple[Plan, tuple[str, ...]]
    from bench.defaults import TOOLS
    from bench.measure.specs import Plan

    tools = () if args.tools == ["none"] else tuple(args.tools)
    bad = [t for t in tools if t not in TOOLS]
    if bad:
        raise UsageError(f"--tools: unknown tool {bad[0]!r}: choose from {', '.join(TOOLS)} (or none)")
    if len(set(args.variants or [])) != len(args.variants or []):
        raise UsageError(f"--variants lists a name twice: {','.join(args.variants)}")
    if args.variants == []:
        raise UsageError("--variants is empty: name at least one variant")
    if args.quick:
        args.rounds, args.profile_windows, args.profile_steps, args.trace_steps, args.epochs = 60, 5, 3, 5, 0
    from bench.measure.stats import MIN_SAMPLES

    for option in ("rounds", "profile_windows"):
        if getattr(args, option) < MIN_SAMPLES:
            raise UsageError(f"--{option.replace('_', '-')} {getattr(args, option)}: at least "
                             f"{MIN_SAMPLES} are needed for a 95% interval")
    plan = Plan(rounds=args.rounds, steps=args.steps, warmup=args.warmup,
                bound=not args.no_bound, epochs=args.epochs, footprint=not args.no_footprint)
    return plan, tools


def _progress(enabled: bool, bars: list) -> Callable[[str, int], Callable[[], None]]:
    from plumbing.progress import bar

    def start(stage: str, total: int) -> Callable[[], None]:
        progress = bar(total=total, desc=stage, unit="step", disable=not enabled)
        bars.append(progress)
        return progress.update

    return start


def run_profile(args: argparse.Namespace) -> int:
    """``profile``: measure the workload's variants interleaved, profile them, write the run."""
    plan, tools = _plan_and_tools(args)
    device = _device(args.device)
    setup_logging()
    import torch

    from bench.measure.specs import VariantsSpec
    from bench.options import context_options
    from bench.workload import Context, WorkloadError, variants_of

    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = Context(device=device, seed=args.seed, progress=not args.no_progress, **context_options(args))
    with writing(args.out) as output:
        try:
            variants = variants_of(args.workload, ctx)
        except WorkloadError as exc:
            raise UsageError(str(exc)) from None
        spec = VariantsSpec(
            workload=args.workload, variants=tuple(variants), device=device.type,
            batch_size=args.batch_size, seed=args.seed, threads=args.threads, data_dir=str(args.data_dir),
            dataset=args.dataset, limit=args.limit, tools=tools, profile_windows=args.profile_windows,
            profile_steps=args.profile_steps, trace_steps=args.trace_steps, counters=not args.no_counters,
            memory_snapshot=args.memory_snapshot, plan=plan, ordered=variants.ordered, report=variants.report)
        result = _measure(spec, variants, output, not args.no_progress)
        files = output.publish(result)
    return _finish(result, args.out, len(files))


def _measure(spec, variants, output: Output, progress: bool):  # -> Result
    from tqdm.contrib.logging import logging_redirect_tqdm

    from bench.runner import NothingMeasured, run

    log.info("Measuring %s: %s (%d rounds x %d step(s), interleaved)", spec.workload,
             ", ".join(variants), spec.plan.rounds, spec.plan.steps)
    bars: list = []
    with logging_redirect_tqdm():
        try:
            return run(spec, variants, output.stage, progress=_progress(progress, bars))
        except NothingMeasured as exc:
            raise UsageError(f"{exc} (nothing was written into {output.out})") from None
        finally:
            for progress_bar in bars:
                progress_bar.close()


def _finish(result, out: Path, files: int) -> int:
    from bench.render.terminal import text

    print(f"\n{text(result)}")
    print(f"\nWrote {files} files into {out}/ (start with {out}/summary.md; raw samples: {out}/run.json)")
    profiled = next((m.name for m in result.measurements if m.profiles), None)
    if profiled:
        print(OPEN_HINTS.format(out=out, v=profiled))
    failed = [m for m in result.measurements if m.status == "failed"]
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more; see {out}/summary.md)" if len(failed) > 1 else ""
        kept = "what it measured before, and the other variants' results, were written" \
            if first.samples else "the other variants' results were written"
        print(f"python -m bench profile: error: variant {first.name!r} failed: {first.reason}{more}; {kept}",
              file=sys.stderr)
        return 2
    return 0


OPEN_HINTS = """Open them with:
  snakeviz {out}/{v}.prof                  # cProfile, one file (or the folder: snakeviz {out})
  python -m line_profiler {out}/{v}.lprof  # line by line
  tensorboard --logdir {out}/tb            # PyTorch Profiler tab (also: ui.perfetto.dev)"""


def run_report(args: argparse.Namespace) -> int:
    """``report``: re-render every report of a saved run.json (nothing is measured)."""
    from bench.measure.result import Result, ResultError

    try:
        result = Result.load(args.run)
    except ResultError as exc:
        raise UsageError(str(exc)) from None
    out = args.out or args.run.parent
    from bench.render.terminal import text

    with writing(out, fresh=False, lock=False) as output:
        written = output.publish(result, rerender=True)
    print(text(result))
    print(f"\nRe-rendered {len(written)} files from {args.run} into {out}/ (nothing was measured)")
    return 0


# --- `instructions`: the CPU instructions of one fetch and one step of each variant, counted
# under callgrind into a pytest-benchmark file with an ``instructions`` section and no timed
# benchmarks, which `compare` judges with the exact rule of bench.regress.instructions.

def instructions_document(counts: Any) -> dict[str, Any]:  # counts: bench.measure.instructions.Counts
    """The JSON a counting run is saved as: readable by pytest-benchmark's tools and by compare."""
    return {"machine_info": {"node": platform.node(), "processor": platform.processor(),
                             "machine": platform.machine(), "cpu_count": os.cpu_count()},
            "benchmarks": [], "instructions": counts.as_dict()}


def write_json(doc: dict[str, Any], path: Path) -> None:
    """Write whole or not at all: a full disk or Ctrl-C leaves the earlier file as it was."""
    try:
        write_atomic(path, json.dumps(doc, indent=1))
    except OSError as exc:
        raise UsageError(f"cannot write {path} ({exc.strerror or exc}); the earlier file, if any, "
                         "is unchanged") from None


def instructions_table(counts: Any) -> str:
    import pandas as pd

    rows = [{"counted": name, "instructions per call": f"{c.instructions:,.0f}",
             "calls per region": c.calls, "repeats": len(c.repeats),
             "spread": f"{c.spread * 100:.3f}%",
             "top function": next(iter(c.functions), "-")[:60]}
            for name, c in counts.counts.items()]
    return pd.DataFrame(rows).to_string(index=False)


def run_instructions(args: argparse.Namespace) -> int:
    from bench.measure.instructions import CountError, count, missing_tool
    from plumbing.progress import bar as progress_bar

    reason = missing_tool()
    if reason:
        raise UsageError(f"cannot count instructions: {reason}")
    if args.json.is_dir() or not args.json.parent.is_dir():
        raise UsageError(f"--json {args.json}: name a file in an existing folder")
    variants = args.variants
    if variants is None and args.workload == BUILTIN:
        variants = BUILTIN_SUITE_VARIANTS.split(",")
    print(f"Counting instructions under callgrind ({args.workload}); starting torch under "
          "Valgrind takes ~30 s, each variant ~10 s more on this kind of machine")
    bar = progress_bar(desc="variants ready", unit="variant", disable=args.no_progress)

    def on_event(kind: str) -> None:
        if kind in ("built", "skipped"):
            bar.update()
        elif kind == "ready":
            bar.set_description("counting regions")
            bar.reset(total=None)
        elif kind == "region":
            bar.update()

    try:
        with tempfile.TemporaryDirectory(prefix="vaebench-callgrind-") as tmp:
            counts = count(args.workload, variants, data_dir=args.data_dir, dataset=args.dataset,
                           limit=args.limit, batch_size=args.batch_size, repeats=args.repeats,
                           fetches=args.fetches, workdir=Path(tmp), on_event=on_event)
    except CountError as exc:
        raise UsageError(str(exc)) from None
    finally:
        bar.close()
    write_json(instructions_document(counts), args.json)
    print(instructions_table(counts))
    for name, why in counts.skipped.items():
        print(f"not counted: {name}: {why}")
    print(f"Counts in {args.json} ({counts.meta['seconds']:.0f} s; one thread, MKL held to "
          f"{counts.meta['mkl_isa']}); compare two with python -m bench compare A.json B.json")
    return 0
