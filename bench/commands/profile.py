"""``profile``: measure the workload's variants in interleaved rounds, profile each, write the run."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from bench.commands.args import Defaults, Deprecated
from bench.defaults import TOOLS
from bench.errors import UsageError
from bench.options import RUN_OPTIONS, WORKLOAD_OPTIONS, add_options
from bench.output import Output, writing
from plumbing.argtypes import comma_list, non_negative_int, positive_int
from plumbing.logs import setup_logging

log = logging.getLogger("bench")


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "profile", help="measure every variant interleaved, profile each, write reports/",
        description="Measure the workload's variants in interleaved rounds (order rotated each "
                    "round), time full epochs of the first and last, count operators, then run "
                    "cProfile, line_profiler and torch.profiler passes. Writes run.json (raw "
                    "samples) and, from it, summary.md/.csv, variants.csv, speedup.png, "
                    "breakdown.png, .prof, .lprof, tb/ traces and a README.md that says how to "
                    "open each into --out.",
        formatter_class=Defaults)
    add_options(p.add_argument, [*WORKLOAD_OPTIONS, *RUN_OPTIONS])
    p.add_argument("--rounds", type=positive_int, default=200,
                   help="interleaved rounds (each visits every variant once, order rotated)")
    p.add_argument("--steps", type=positive_int, default=1,
                   help="timed steps per round; 1 pairs the variants' samples most tightly in time")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="steps per variant before round 1")
    p.add_argument("--epochs", type=non_negative_int, default=1,
                   help="full epochs timed end to end for the first and the last variant (0: none)")
    p.add_argument("--tools", type=comma_list, default=list(TOOLS),
                   help=f"profilers, comma list from: {', '.join(TOOLS)} (or 'none')")
    p.add_argument("--profile-windows", type=positive_int, default=8,
                   help="pairs of plain/profiled windows per profiler (its overhead's samples); a "
                        "window is one restored round of --profile-steps steps")
    p.add_argument("--profile-rounds", type=positive_int, dest="profile_windows", action=Deprecated,
                   new="--profile-windows")
    p.add_argument("--profile-steps", type=positive_int, default=5, help="timed steps per profiler window")
    p.add_argument("--trace-steps", type=positive_int, default=10,
                   help="active steps of each Kineto trace (TensorBoard's profiler tab wants several)")
    p.add_argument("--no-bound", action="store_true", help="skip the compute-only bound")
    p.add_argument("--no-counters", action="store_true", help="skip the exact operator/call counts")
    p.add_argument("--no-footprint", action="store_true",
                   help="skip one step's FLOPs and peak memory per variant (and the machine's peak FLOP/s)")
    p.add_argument("--memory-snapshot", action="store_true",
                   help="CUDA only: record the allocator's history over a few steps of each variant and "
                        "dump <variant>.memory.pickle (open at pytorch.org/memory_viz)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 60 rounds, 5 profile pairs of 3 steps, 5 traced steps, no full epoch")
    p.add_argument("--out", type=Path, default=Path("reports"))
    p.add_argument("--no-progress", action="store_true")


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


def main(args: argparse.Namespace) -> int:
    """``profile``: measure the workload's variants interleaved, profile them, write the run."""
    plan, tools = _plan_and_tools(args)
    device = _device(args.device)
    setup_logging()
    import torch

    from bench.measure.specs import VariantsSpec
    from bench.options import WorkloadChoice
    from bench.workload import Context, WorkloadError, variants_of

    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = Context(device=device, seed=args.seed, progress=not args.no_progress,
                  **WorkloadChoice.of(vars(args)).context())
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

    from bench.profile.job import NothingMeasured, run

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
