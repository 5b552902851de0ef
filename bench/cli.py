"""``python -m bench`` (or ``vaebench``): measure a training loop's variants, re-render a run,
compare benchmark files, check a change for regressions.

This module only parses, validates and dispatches; torch is imported by the command that
needs it, so ``--help`` and ``compare`` answer at once. Bad input ends with one ``error:``
line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.defaults import TOOLS
from bench.errors import UsageError
from bench.options import RUN_OPTIONS, WORKLOAD_OPTIONS, add_options
from plumbing.argtypes import comma_list, non_negative_int, positive_float, positive_int
from plumbing.files import OutInUse


class Deprecated(argparse.Action):
    """An old flag name, kept working for one release: it says its new name once and stores
    into the new one's dest."""

    def __init__(self, option_strings, dest, new: str, **kwargs):  # type: ignore[no-untyped-def]
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        print(f"warning: {option_string} is deprecated and goes in the next release; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def _add_profile_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "profile", help="measure every variant interleaved, profile each, write reports/",
        description="Measure the workload's variants in interleaved rounds (order rotated each "
                    "round), time full epochs of the first and last, count operators, then run "
                    "cProfile, line_profiler and torch.profiler passes. Writes run.json (raw "
                    "samples) and, from it, summary.md/.csv, variants.csv, speedup.png, "
                    "breakdown.png, .prof, .lprof, tb/ traces and a README.md that says how to "
                    "open each into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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


def _add_report_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "report", help="re-render summary.md/.csv, variants.csv and figures from a saved run.json",
        description="Read a run.json written by `profile` and write its reports again, measuring "
                    "nothing.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", type=Path, nargs="?", default=Path("reports/run.json"))
    p.add_argument("--out", type=Path, default=None, help="folder for the reports (default: the run's)")


def _add_rule_arguments(p: argparse.ArgumentParser) -> None:
    """The decision rule's knobs, shared by compare and regress."""
    p.add_argument("--threshold", type=float, default=0.05,
                   help="slowdown (fraction) a regression must exceed")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level of the U test")
    p.add_argument("--max-spread", type=float, default=0.25,
                   help="IQR/median above this on either side: the ratio's 95%% interval must "
                        "clear 1 + threshold, else the verdict is noisy")
    p.add_argument("--instructions-threshold", type=positive_float, default=0.01,
                   help="instruction counts (bench instructions) above 1 + this times the baseline's "
                        "are 'slower', a regression (unchanged code: steps within 0.01%%, small "
                        "fetches within ~0.4%%)")
    p.add_argument("--count-threshold", type=positive_float, dest="instructions_threshold",
                   action=Deprecated, new="--instructions-threshold")
    p.add_argument("--timing-only", action="store_true",
                   help="judge by the timings alone: the instruction counts neither fail a benchmark "
                        "nor resolve a noisy one (without Valgrind this is what happens anyway)")


def _add_compare_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "compare", help="compare two pytest-benchmark JSON files (raw rounds) for regressions",
        description="Per benchmark: medians, ratio with a 95% bootstrap interval, one-sided "
                    "Mann-Whitney U p-value, verdict (slower/faster/unchanged/noisy) and any "
                    "change in the deterministic counters. Exit 1 on a regression, 2 on bad input "
                    "(a damaged file, a NaN or non-positive time, no benchmark in common), 3 when "
                    "some benchmark is noisy and no instruction count resolved it (no verdict).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("baseline", type=Path)
    p.add_argument("candidate", type=Path)
    _add_rule_arguments(p)
    p.add_argument("--min-samples", type=int, default=5, help="fewer samples per side than this -> noisy")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table here")


def _add_regress_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "regress", help="same-machine interleaved A/B benchmark of a base commit vs the work tree",
        description="Check out --base into a temporary worktree, run the quick benchmark suites "
                    "of base and candidate alternately in --processes short processes each, and "
                    "compare the per-process medians, and count both sides' instructions under "
                    "callgrind: a benchmark whose timing is too noisy is judged by its count. Writes "
                    "regress.md and verdict.json into --out. Exit 1 on a regression, 2 on bad input "
                    "or a failed benchmark process, 3 when some benchmark is noisy and no count "
                    "resolved it (no verdict).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base", default=None,
                   help="git ref of the baseline (default: origin/main if it exists, else HEAD~1)")
    # both sides benchmark the workload (a file path is read in each side's tree); the built-in
    # one's default variants: its five ladder rungs and resident+fused
    add_options(p.add_argument, ["workload", "variants", "data-dir", "dataset", "limit", "batch-size"],
                limit=10_000)
    p.add_argument("--processes", type=positive_int, default=7,
                   help="benchmark processes per side (7 lets ~10 benchmarks reach alpha 0.01 after Holm)")
    p.add_argument("--rounds", type=positive_int, dest="processes", action=Deprecated, new="--processes")
    p.add_argument("--select", default="step or fetch", help="pytest -k expression of benchmarks")
    p.add_argument("--out", type=Path, default=Path("reports/regress"))
    _add_rule_arguments(p)
    p.add_argument("--no-instructions", dest="instructions", action="store_false",
                   help="skip the instruction counts (bench instructions) of both sides, which "
                        "callgrind takes side by side before the timings (~1.5 min on a 2-core machine)")
    p.add_argument("--no-cost", dest="instructions", action=Deprecated, nargs=0, const=False,
                   new="--no-instructions")


def _add_instructions_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "instructions", help="count the CPU instructions of one fetch and one step of each variant "
                             "(callgrind)",
        description="Run the workload under Valgrind's callgrind and count the instructions of "
                    "--fetches fetches and of one training step of each variant, --repeats times "
                    "(one thread, on the CPU). Counts are exact where timings are noisy: compare "
                    "two count files with `bench compare`; `bench regress` runs this for both "
                    "sides. Needs valgrind (apt-get install valgrind).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # default variants of the built-in workload: its five ladder rungs and resident+fused
    add_options(p.add_argument, WORKLOAD_OPTIONS, limit=2000)
    p.add_argument("--repeats", type=positive_int, default=2,
                   help="counts of each region (median kept; repeats agree within 0.01%% for a step, "
                        "~0.4%% for a small fetch, far inside the 1%% that `compare` calls)")
    p.add_argument("--fetches", type=positive_int, default=10, help="fetches in one fetch region")
    p.add_argument("--json", type=Path, default=Path("reports/instructions.json"), help="where the counts go")
    p.add_argument("--no-progress", action="store_true")


def _add_history_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "history", help="every saved benchmark run over time, with the steps (change points) in it",
        description="Read pytest-benchmark JSON files (folders are searched recursively), plot "
                    "each benchmark's median with its 95% interval per run, find the steps with "
                    "ruptures' PELT and list them with their size and commit. Writes "
                    "history.md, history.csv and history.png into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", type=Path, nargs="*", default=[Path("reports/benchmarks")])
    p.add_argument("-k", "--select", default="", help="only benchmarks whose name contains this")
    p.add_argument("--out", type=Path, default=Path("reports/history"))


def _add_run_parser(commands: argparse._SubParsersAction) -> None:
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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--warmup", type=non_negative_int, default=5, help="steps left out first")
    p.add_argument("--steps", type=non_negative_int, default=100,
                   help="steps measured, then the profiler windows, then the script is stopped; 0: "
                        "measure every step until the script ends (no profilers)")
    p.add_argument("--step-on", choices=("auto", "optimizer", "backward"), default="auto",
                   help="what ends a step: optimizer.step(), or backward() for a script with no "
                        "optimizer (auto: the optimizer where the script makes one)")
    p.add_argument("--tools", type=comma_list, default=["cprofile", "kineto", "lines"],
                   help="profilers, comma list from: cprofile, kineto, lines (or 'none')")
    p.add_argument("--lines", type=comma_list, default=[],
                   help="line_profiler's functions: NAME (a function of the script) or module:function "
                        "(default: the function that calls optimizer.step() and the dataset's __getitem__)")
    p.add_argument("--profile-windows", type=positive_int, default=5,
                   help="pairs of (plain, profiled) windows per profiler: its overhead's samples")
    p.add_argument("--profile-steps", type=positive_int, default=5, help="steps per profiler window")
    p.add_argument("--wait", type=positive_float, default=30.0,
                   help="seconds to wait for the first step before saying it is no training script")
    p.add_argument("--nproc", type=positive_int, default=None,
                   help="run N processes with torchrun (torch.distributed.run), one capture per rank")
    p.add_argument("--torchrun", default="", help="more torchrun options, e.g. '--nnodes 2 "
                   "--rdzv-endpoint host:29400'")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                   help="what a change buys on your script: run the two command lines (quoted) in "
                        "alternating processes and state B/A with its interval and a verdict")
    p.add_argument("--repeats", type=positive_int, default=5, help="--compare: processes a side")
    p.add_argument("--out", type=Path, default=Path("reports/run"))
    p.add_argument("-m", dest="module", default=None, metavar="MODULE",
                   help="run a module as `python -m MODULE` does")
    p.add_argument("script_args", nargs=argparse.REMAINDER, metavar="script.py [args]",
                   help="the script and its own arguments")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_profile_parser(commands)
    _add_run_parser(commands)
    _add_report_parser(commands)
    _add_compare_parser(commands)
    _add_regress_parser(commands)
    _add_instructions_parser(commands)
    _add_history_parser(commands)
    return parser


def take_compare(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``run --compare A B`` taken out before argparse, which would read a command line that
    starts with ``-m`` as an option of its own."""
    if len(argv) < 2 or argv[0] != "run" or "--compare" not in argv:
        return argv, None
    i = argv.index("--compare")
    script = next((k for k, a in enumerate(argv) if a == "-m" or a.endswith(".py")), len(argv))
    if script < i or len(argv) < i + 3:
        return argv, None  # the script's own --compare, or incomplete: argparse says so
    return argv[:i] + argv[i + 3:], argv[i + 1:i + 3]


RENAMED = {"cost": "instructions"}  # old command -> new, kept for one release


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    rest, compare = take_compare(list(sys.argv[1:] if argv is None else argv))
    if rest and rest[0] in RENAMED:
        print(f"warning: `{rest[0]}` is deprecated and goes in the next release; use "
              f"`{RENAMED[rest[0]]}`", file=sys.stderr)
        rest = [RENAMED[rest[0]], *rest[1:]]
    args = parser.parse_args(rest)
    if compare is not None:
        args.compare = compare
    try:
        if args.command == "profile":
            from bench.commands import run_profile

            return run_profile(args)
        if args.command == "run":
            from bench.capture.command import run_capture

            return run_capture(args)
        if args.command == "report":
            from bench.commands import run_report

            return run_report(args)
        if args.command == "history":
            from bench.regress.history import run_history

            return run_history(args)
        if args.command == "instructions":
            from bench.commands import run_instructions

            return run_instructions(args)
        if args.command == "regress":
            from bench.regress.worktree import run_regress

            return run_regress(args)
        from bench.regress.compare import run_compare

        return run_compare(args)
    except (UsageError, OutInUse) as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the earlier reports were left as they were", file=sys.stderr)
        return 130
