"""``history``: every saved benchmark run over time, with its change points."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.args import Defaults


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "history", help="every saved benchmark run over time, with the steps (change points) in it",
        description="Read pytest-benchmark JSON files (folders are searched recursively), plot "
                    "each benchmark's median with its 95% interval per run, find the steps with "
                    "ruptures' PELT and list them with their size and commit. Writes "
                    "history.md, history.csv and history.png into --out; --html adds history.html, a "
                    "self-contained dashboard (works offline).",
        formatter_class=Defaults)
    p.add_argument("paths", type=Path, nargs="*", default=[Path("reports/benchmarks")])
    p.add_argument("-k", "--select", default="", help="only benchmarks whose name contains this")
    p.add_argument("--out", type=Path, default=Path("reports/history"))
    p.add_argument("--html", action="store_true",
                   help="also write history.html: per benchmark its medians with interval bands, the "
                        "change points with their commits, and the latest verdicts")


def main(args: argparse.Namespace) -> int:
    from bench.errors import UsageError
    from bench.output import check_writable_dir
    from bench.regress.benchjson import BenchFileError
    from bench.regress.dashboard import write_html
    from bench.regress.history import load_history, table, write

    try:
        history = load_history(list(args.paths))
        check_writable_dir(args.out)
    except (BenchFileError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    names = [n for n in history.names if args.select in n]
    if not names:
        raise UsageError(f"no benchmark name contains {args.select!r}; the runs hold "
                         f"{', '.join(history.names[:6])}...")
    written = write(history, names, args.out) + (write_html(history, names, args.out) if args.html else [])
    rows = table(history, names)
    print(f"{len(history.runs)} runs, {len(names)} benchmarks, {len(rows)} step(s) found.")
    for row in rows:
        print(f"  {row['benchmark']}: {row['change']} at run {row['run']} ({row['when']}, commit "
              f"{row['commit']}): {row['before_ms']:.3f} -> {row['after_ms']:.3f} ms")
    print(f"Wrote {', '.join(str(p) for p in written)}")
    return 0
