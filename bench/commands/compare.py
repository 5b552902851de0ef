"""``compare``: two pytest-benchmark files, benchmark by benchmark, by the decision rule."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.args import Defaults, add_rule_arguments


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "compare", help="compare two pytest-benchmark JSON files (raw rounds) for regressions",
        description="Per benchmark: medians, ratio with a 95% bootstrap interval, one-sided "
                    "Mann-Whitney U p-value, verdict (slower/faster/unchanged/noisy) and any "
                    "change in the deterministic counters. Exit 1 on a regression, 2 on bad input "
                    "(a damaged file, a NaN or non-positive time, no benchmark in common), 3 when "
                    "some benchmark is noisy and no instruction count resolved it (no verdict).",
        formatter_class=Defaults)
    p.add_argument("baseline", type=Path)
    p.add_argument("candidate", type=Path)
    add_rule_arguments(p)
    p.add_argument("--min-samples", type=int, default=5, help="fewer samples per side than this -> noisy")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table here")


def main(args: argparse.Namespace) -> int:
    from bench.regress.compare import CompareSpec, run_compare

    return run_compare(CompareSpec(
        baseline=args.baseline, candidate=args.candidate, threshold=args.threshold, alpha=args.alpha,
        min_samples=args.min_samples, max_spread=args.max_spread,
        instructions_threshold=args.instructions_threshold, timing_only=args.timing_only,
        markdown=args.markdown))
