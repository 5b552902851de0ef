"""``report``: re-render every report of a saved run.json; nothing is measured."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.args import Defaults
from bench.errors import UsageError
from bench.output import writing


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "report", help="re-render summary.md/.csv, variants.csv and figures from a saved run.json",
        description="Read a run.json written by `profile` and write its reports again, measuring "
                    "nothing.", formatter_class=Defaults)
    p.add_argument("run", type=Path, nargs="?", default=Path("reports/run.json"))
    p.add_argument("--out", type=Path, default=None, help="folder for the reports (default: the run's)")


def main(args: argparse.Namespace) -> int:
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
    print(f"\nRe-rendered {len(written)} files from {args.run} into {out}/ (nothing measured anew)")
    return 0
