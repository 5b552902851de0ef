"""``history``: every saved benchmark run over time, with its change points."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "history", help="every saved benchmark run over time, with the steps (change points) in it",
        description="Read pytest-benchmark JSON files (folders are searched recursively), plot "
                    "each benchmark's median with its 95% interval per run, find the steps with "
                    "ruptures' PELT and list them with their size and commit. Writes "
                    "history.md, history.csv and history.png into --out; --html adds history.html, a "
                    "self-contained dashboard (works offline).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", type=Path, nargs="*", default=[Path("reports/benchmarks")])
    p.add_argument("-k", "--select", default="", help="only benchmarks whose name contains this")
    p.add_argument("--out", type=Path, default=Path("reports/history"))
    p.add_argument("--html", action="store_true",
                   help="also write history.html: per benchmark its medians with interval bands, the "
                        "change points with their commits, and the latest verdicts")


def main(args: argparse.Namespace) -> int:
    from bench.regress.history import run_history

    return run_history(args)
