"""``regress``: a base commit against the work tree, interleaved on this machine, timings and counts."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.args import Defaults, Deprecated, add_rule_arguments
from bench.options import add_options
from plumbing.argtypes import positive_int


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "regress", help="same-machine interleaved A/B benchmark of a base commit vs the work tree",
        description="Check out --base into a temporary worktree, run the quick benchmark suites "
                    "of base and candidate alternately in --processes short processes each, and "
                    "compare the per-process medians, and count both sides' instructions under "
                    "callgrind: a benchmark whose timing is too noisy is judged by its count. Writes "
                    "regress.md and verdict.json into --out. Exit 1 on a regression, 2 on bad input "
                    "or a failed benchmark process, 3 when some benchmark is noisy and no count "
                    "resolved it (no verdict).",
        formatter_class=Defaults)
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
    add_rule_arguments(p)
    p.add_argument("--no-instructions", dest="instructions", action="store_false",
                   help="skip the instruction counts (bench instructions) of both sides, which "
                        "callgrind takes side by side before the timings (~1.5 min on a 2-core machine)")
    p.add_argument("--no-cost", dest="instructions", action=Deprecated, nargs=0, const=False,
                   new="--no-instructions")


def main(args: argparse.Namespace) -> int:
    from bench.regress.worktree import run_regress

    return run_regress(spec_from(args))


def spec_from(args: argparse.Namespace):  # -> RegressSpec
    from bench.options import WorkloadChoice
    from bench.regress.worktree import RegressSpec

    return RegressSpec(choice=WorkloadChoice.of(vars(args)), base=args.base, processes=args.processes,
                       select=args.select, out=args.out, threshold=args.threshold, alpha=args.alpha,
                       max_spread=args.max_spread, instructions_threshold=args.instructions_threshold,
                       timing_only=args.timing_only, instructions=args.instructions)
