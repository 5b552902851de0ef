"""``vaebench run [options] train.py [its arguments]``: observe a training script unchanged.

One process runs the script here, under the recorder; ``--nproc N`` launches it with
PyTorch's own elastic launcher (torchrun), each rank capturing itself, and merges the ranks.
Either way the run is saved as run.json (the one Result format) and rendered by the same
renderers as ``profile``. The script's own failure keeps its traceback and exit code, and what
was measured before it is written; our errors are one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from bench.commands.args import Defaults
from bench.defaults import TOOLS
from bench.errors import UsageError
from plumbing.argtypes import comma_list, non_negative_int, option_value, positive_float, positive_int

log = logging.getLogger("bench")


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "run", help="observe a training script unchanged: steps, parts, throughput, memory, profiles",
        usage="vaebench run [options] train.py [its arguments]\n       "
              "vaebench run [options] -m package.module [its arguments]",
        description="Run the script as `python train.py` would, find its training steps (each "
                    "optimizer.step(), or each backward() where it updates by hand) and their parts "
                    "(data, copy, forward, backward, optimizer, other) with PyTorch's global hooks, "
                    "measure a window of steps, run each profiler in windows alternated with plain "
                    "ones, then stop the script. Writes run.json, summary.md/.csv, figures, .prof "
                    "and traces into --out. --nproc N runs it under torchrun, one capture per rank.",
        formatter_class=Defaults)
    p.add_argument("--warmup", type=non_negative_int, default=5, help="steps left out first")
    p.add_argument("--steps", type=non_negative_int, default=None,
                   help="steps measured (the first 30, then the profiler windows, then the rest), then "
                        "the script is stopped; 0: "
                        "measure every step until the script ends (no profilers) (default: 100; "
                        "--try: 30 a process; --fit: 3 a batch size)")
    p.add_argument("--step-on", choices=("auto", "optimizer", "backward"), default="auto",
                   help="what ends a step: optimizer.step(), or backward() for a script with no "
                        "optimizer (auto: the optimizer where the script makes one)")
    p.add_argument("--tools", type=comma_list, default=list(TOOLS),
                   help=f"profilers, comma list from: {', '.join(TOOLS)} (or 'none')")
    p.add_argument("--lines", type=comma_list, default=[],
                   help="line_profiler's functions: NAME (a function of the script) or module:function "
                        "(default: the function that calls optimizer.step() and the dataset's __getitem__)")
    p.add_argument("--profile-windows", type=positive_int, default=3,
                   help="pairs of (plain, profiled) windows per profiler: its overhead's samples")
    p.add_argument("--profile-steps", type=positive_int, default=3, help="steps per profiler window")
    p.add_argument("--observe-windows", type=non_negative_int, default=400,
                   help="pairs of single steps with vaebench's part hooks on and off, after the "
                        "profilers': what observing the script costs, with its interval (0: not "
                        "measured; at most what fits 10 s at the median step are kept, at least 10)")
    p.add_argument("--wait", type=positive_float, default=30.0,
                   help="seconds to wait for the first step before saying it is no training script")
    p.add_argument("--nproc", type=positive_int, default=None,
                   help="run N processes with torchrun (torch.distributed.run), one capture per rank")
    p.add_argument("--torchrun", default="", help="more torchrun options, e.g. '--nnodes 2 "
                   "--rdzv-endpoint host:29400'")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                   help="what a change buys on your script: run the two command lines (quoted) in "
                        "alternating processes and state B/A with its interval and a verdict")
    p.add_argument("--repeats", type=positive_int, default=5, help="--compare, --try: processes a side")
    p.add_argument("--fit", action="store_true",
                   help="what batch fits: the step's memory at the script's own batch size and at x2 "
                        "and x4 (its DataLoaders' batch_size patched, a short process each), a line "
                        "through the first two, the largest batch the machine's memory holds (a GPU's: "
                        "the device's), the line checked at the third; with --fixes, the batch each "
                        "of those fixes lets through (the script's batch and x2 with it applied)")
    _try_options(p)
    p.add_argument("--out", type=Path, default=Path("reports/run"))
    p.add_argument("-m", dest="module", default=None, metavar="MODULE",
                   help="run a module as `python -m MODULE` does")
    p.add_argument("script_args", nargs=argparse.REMAINDER, metavar="script.py [args]",
                   help="the script and its own arguments")


def _try_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--try", dest="try_", action="store_true",
                   help="measure the usual fixes on the unmodified script, each applied by patching "
                        "PyTorch in the script's process: those that can be switched between steps "
                        "(foreach/fused optimizers, threads, bf16/fp16 autocast, compile, CUDA flags) "
                        "step against step in the script's own process, in blocks, with an A/A; a "
                        "DataLoader's workers and pin_memory in windows of steps from a twin loader; "
                        "persistent workers (and your fixes without a switch) in processes "
                        "alternated with the baseline's; losses compared and the line to change; with "
                        "--nproc N each process is a torchrun job of N ranks")
    p.add_argument("--fixes", type=comma_list, default=None,
                   help="--try: only these catalogue entries (default: every one that applies; "
                        "'compile' only when named)")
    p.add_argument("--fixes-from", action="append", default=[], metavar="MODULE",
                   help="--try: import MODULE first, where your own fixes register themselves "
                        "(bench.fixes.catalogue.register and bench.capture.patches.patch)")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="seed torch, numpy and random before the script starts (--try: default 0)")
    p.add_argument("--losses", type=non_negative_int, default=None,
                   help="measured losses kept per process and compared (--try: default 10)")
    p.add_argument("--tolerance", type=positive_float, default=0.05,
                   help="--try: a relative loss change up to this (beyond the baseline's own) is "
                        "'within'; more is 'loss diverged'")
    p.add_argument("--blocks", type=positive_int, default=6,
                   help="--try: independent blocks of in-process pairs; a switch's interval is taken "
                        "across them (at least 3)")
    p.add_argument("--pairs", type=positive_int, default=16,
                   help="--try: pairs of single steps (switch on, off) per fix per block")
    p.add_argument("--max-minutes", type=positive_float, default=None,
                   help="--try: start no process after this; what was measured is kept")


def spec_from(args: argparse.Namespace):  # -> ScriptSpec
    from bench.measure.specs import ScriptSpec

    steps = 100 if args.steps is None else args.steps
    command = tuple(["-m", args.module, *args.script_args] if args.module else args.script_args)
    tools = () if args.tools == ["none"] else tuple(args.tools)
    bad = [t for t in tools if t not in TOOLS]
    if bad:
        raise UsageError(f"--tools: unknown tool {bad[0]!r}: choose from {', '.join(TOOLS)} (or none)")
    if steps == 0 and tools:
        log.info("--steps 0: the script runs to its end, every step after the warm-up is measured; "
                 "no profiler windows (they need steps after the measured window)")
        tools = ()
    return ScriptSpec(command=command, warmup=args.warmup, steps=steps, step_on=args.step_on,
                       tools=tools, profile_windows=args.profile_windows,
                       profile_steps=args.profile_steps, wait=args.wait, lines=tuple(args.lines),
                       observe_windows=args.observe_windows if steps else 0,
                       seed=args.seed, losses=args.losses or 0,
                       plugins=tuple(args.fixes_from), nproc=args.nproc or 0, torchrun=args.torchrun or "")


def main(args: argparse.Namespace) -> int:
    """``run``: observe the script (or its ranks), write the run."""
    from bench.capture.record import observe
    from bench.capture.script import check_target
    from bench.output import writing
    from plumbing.logs import setup_logging

    setup_logging()
    if args.compare:
        return compare_commands(args)
    if args.try_:
        return try_fixes(args)
    if args.fit:
        return fit_batch(args)
    spec = spec_from(args)
    check_target(spec.command)
    if args.nproc and args.nproc > (os.cpu_count() or 1):
        log.warning("--nproc %d is more than this machine's %d cores: the ranks will share cores "
                    "and their times will say so", args.nproc, os.cpu_count() or 1)
    with writing(args.out) as output:
        result, script_code = observe(spec, output.stage)
        _check(result, spec, script_code)
        output.publish(result)
    from bench.render.terminal import text

    print(f"\n{text(result)}")
    print(f"\nWrote the run into {args.out}/ (start with {args.out}/summary.md; raw steps: "
          f"{args.out}/run.json)")
    for m in result.measurements:
        if m.status == "failed":
            kept = (f"what was measured before is in {args.out}/" if m.samples
                    else "nothing of it was measured")
            print(f"vaebench run: {m.name}: {m.reason}; {kept}", file=sys.stderr)
    return script_code


def fit_batch(args: argparse.Namespace) -> int:
    """``--fit``: the step's memory at several batch sizes (bench.fixes.fit), saved as a ``fit`` run."""
    import tempfile

    from bench.capture.script import check_target
    from bench.fixes.fit import run_fit
    from bench.measure.specs import FitSpec
    from bench.output import writing
    from bench.render.terminal import text

    command = tuple(["-m", args.module, *args.script_args] if args.module else args.script_args)
    check_target(command)
    spec = FitSpec(command=command, warmup=min(args.warmup, 3), steps=args.steps or 3,
                   seed=0 if args.seed is None else args.seed, wait=args.wait, plugins=tuple(args.fixes_from),
                   fixes=_fit_fixes(args.fixes))
    with writing(args.out) as output, tempfile.TemporaryDirectory(prefix="vaebench-fit-") as tmp:
        result = run_fit(spec, Path(tmp))
        output.publish(result)
    print(f"\n{text(result)}")
    print(f"\nWrote the run into {args.out}/ (start with {args.out}/summary.md)")
    return 0


def _fit_fixes(asked: list[str] | None) -> tuple[str, ...]:
    """--fit --fixes: catalogue entries whose memory is measured too (none unless named)."""
    from bench.fixes import catalogue

    unknown = [f for f in asked or [] if f not in catalogue.names()]
    if unknown:
        raise UsageError(f"--fixes: unknown fix {unknown[0]!r}: choose from {', '.join(catalogue.names())}")
    return tuple(asked or ())


def try_fixes(args: argparse.Namespace) -> int:
    """``--try``: the fixes measured on the script (bench.fixes.children), saved as a ``try`` run."""
    from bench.capture.script import check_target
    from bench.fixes.schedule import run_try
    from bench.output import writing
    from bench.render.terminal import text

    command = tuple(["-m", args.module, *args.script_args] if args.module else args.script_args)
    check_target(command)
    spec = try_spec(args, command)
    with writing(args.out) as output:
        result = run_try(spec, output.stage)
        output.publish(result)
    print(f"\n{text(result)}")
    print(f"\nWrote the run into {args.out}/ (start with {args.out}/summary.md; every process's steps "
          f"and losses: {args.out}/run.json)")
    return 130 if "interrupted" in result.partial.get("try/schedule", "") else 0


def try_spec(args: argparse.Namespace, command: tuple[str, ...]):  # -> TrySpec
    """``--try``'s spec, built here from the command line (a user's fix modules imported first:
    their entries and switches register themselves); its bad input is one line, exit 2."""
    import importlib

    from bench.measure.specs import TrySpec

    for module in args.fixes_from:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UsageError(f"--fixes-from {module}: cannot import it ({exc}); put its folder on "
                             "PYTHONPATH or run from there") from None
    check_try(args)
    return TrySpec(command=command, warmup=args.warmup, steps=30 if args.steps is None else args.steps,
                   repeats=args.repeats, blocks=args.blocks, pairs=args.pairs,
                   seed=args.seed if args.seed is not None else 0,
                   losses=10 if args.losses is None else args.losses, tolerance=args.tolerance,
                   wait=args.wait,
                   asked=tuple(args.fixes) if args.fixes is not None else None,
                   plugins=tuple(args.fixes_from), max_minutes=args.max_minutes, nproc=args.nproc or 0,
                   torchrun=args.torchrun or "")


def _check(result, spec, script_code: int) -> None:  # result: Result
    """Our one-line errors: nothing was measured, and why."""
    infos = [m.process for m in result.measurements if m.process is not None]
    if all(i.no_step for i in infos):
        raise UsageError(next((i.waited for i in infos if i.waited), "no optimizer.step() or backward() "
                              "seen: is this a training script? (--wait to wait longer for a slow start)"))
    if result.measured:
        return
    seen = max((i.steps_seen for i in infos), default=0)
    why = next((i.error for i in infos if i.error), "")
    if seen == 0 and not why:
        raise UsageError("the script ended without an optimizer.step() or backward(): is this a "
                         "training script?")
    if any(i.oom for i in infos):
        return  # the most common out of memory, a batch too large from its first step: explained
    if why:  # the script's own failure: its traceback was printed above, its code is kept
        print(f"vaebench run: {why} (before the first measured step: nothing was timed)", file=sys.stderr)
        raise SystemExit(script_code or 1)
    raise UsageError(f"the script ran {seen} step(s), fewer than --warmup {spec.warmup} + 1: nothing "
                     "was measured; lower --warmup or let it run longer")


def compare_commands(args: argparse.Namespace) -> int:
    """``--compare "A" "B"``: the two command lines in alternating processes (A B, B A, ...), each
    process's median step one sample; the ratio B/A with its interval and a verdict, by the same
    rule ``regress`` applies to commits -- run by ``--try``'s runner, saved as a ``try`` Result
    (run.json, summary.md, report.html; ``vaebench report`` re-renders it)."""
    from bench.capture.script import check_target
    from bench.fixes.schedule import run_compare
    from bench.measure.rule import Rule, min_samples_for
    from bench.measure.specs import TrySpec
    from bench.output import writing
    from bench.render.terminal import text

    if args.script_args or args.module:
        raise UsageError("--compare takes the two command lines itself: vaebench run --compare "
                         "\"train.py --num-workers 0\" \"train.py --num-workers 2\"")
    a, b = (tuple(shlex.split(side)) for side in args.compare)
    for words in (a, b):
        check_target(words)
    need = min_samples_for(Rule().alpha)
    if args.repeats < need:
        raise UsageError(f"--repeats {args.repeats}: at least {need} processes a side are needed for a "
                         f"verdict at p < {Rule().alpha}")
    spec = TrySpec(command=a, versus=b, warmup=args.warmup, steps=args.steps or 50, repeats=args.repeats,
                   seed=args.seed, losses=args.losses or 0, wait=args.wait, max_minutes=args.max_minutes)
    with writing(args.out) as output:
        result = run_compare(spec, output.stage)
        output.publish(result)
    print(f"\n{text(result)}")
    print(f"\nWrote the run into {args.out}/ (start with {args.out}/summary.md; every process's steps: "
          f"{args.out}/run.json)")
    return 130 if "interrupted" in result.partial.get("try/schedule", "") else 0


def _nodes(torchrun: str) -> int:
    """The most nodes torchrun's options ask for (``--nnodes 2`` or ``--nnodes 1:4``)."""
    last = (option_value(shlex.split(torchrun), "--nnodes") or "1").split(":")[-1]
    return int(last) if last.isdigit() else 1


def check_try(args: argparse.Namespace) -> None:
    """``--try``'s bad input: one line, exit 2."""
    from bench.fixes import catalogue
    from bench.measure.rule import Rule, min_samples_for

    if args.steps == 0:
        raise UsageError("--try --steps 0: each process needs a fixed window of steps (its median is one "
                         "sample); give --steps N, e.g. --steps 50")
    need = min_samples_for(Rule().alpha)
    if args.repeats < need:
        raise UsageError(f"--try --repeats {args.repeats}: at least {need} processes a side are needed for "
                         f"a verdict at p < {Rule().alpha}")
    if args.blocks < 3:
        raise UsageError(f"--try --blocks {args.blocks}: an interval across blocks needs at least 3")
    if args.nproc and _nodes(args.torchrun or "") > 1:
        raise UsageError("--try across several nodes is not built: each process of the schedule would have "
                         "to start on every node at once; try the fixes on one node (--nproc N without "
                         "--nnodes), then run the chosen ones across the nodes")
    if args.fixes is not None and not args.fixes:
        raise UsageError(f"--fixes names no fix: name at least one ({', '.join(catalogue.names())}), or "
                         "leave --fixes out to try every fix that applies")
    unknown = [f for f in args.fixes or [] if f not in catalogue.names()]
    if unknown:
        raise UsageError(f"--fixes: unknown fix {unknown[0]!r}: choose from {', '.join(catalogue.names())}")
