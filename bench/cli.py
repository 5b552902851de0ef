"""``python -m bench``: profile the pipeline ladder into reports/, compare benchmark runs.

Arguments are checked before any profiling starts; bad input ends with a one-line
``error:`` message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.runner import TOOLS, ProfileReport, passes_per_run, profile
from bench.spec import RunSpec
from vae.cli import add_data_arguments, positive_int, setup_logging
from vae.data import DataError, load_mnist
from vae.device import DEVICES, DeviceError, resolve_device
from vae.pipelines import LADDER, PIPELINES, canonical_name

log = logging.getLogger("bench")

OPEN_HINTS = """\
Open them with:
  snakeviz {out}/naive.prof                 # cProfile, one file (or the folder: snakeviz {out})
  python -m line_profiler {out}/naive.lprof # line by line
  tensorboard --logdir {out}/tb             # PyTorch Profiler tab (also: ui.perfetto.dev)"""


class UsageError(Exception):
    """Bad command-line input; main() prints it as one line and exits 2."""


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def default_pipelines(device: torch.device) -> tuple[list[str], dict[str, str]]:
    """The rungs that mean something on ``device``, and why the others are left out."""
    chosen, skipped = [], {}
    for name in LADDER:
        if PIPELINES[name].needs_cuda and device.type != "cuda":
            skipped[name] = "needs CUDA (on the CPU it runs as `batched`; ask for it with --pipelines)"
        else:
            chosen.append(name)
    return chosen, skipped


def add_profile_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "profile", help="profile each pipeline with cProfile, line_profiler and torch.profiler",
        description="Profile training steps of each pipeline of the ladder and write .prof, "
                    ".lprof/.lines.txt, Kineto traces (tb/), operator tables, summary.csv/.md "
                    "and plots into --out. Timings come from a pass with no profiler attached.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--pipelines", type=comma_list, default=None,
                   help=f"comma list from: {', '.join(PIPELINES)} (default: every rung that "
                        "runs natively on the device)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--steps", type=positive_int, default=30, help="measured steps per pass")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured steps before each pass")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--tools", type=comma_list, default=list(TOOLS),
                   help=f"comma list from: {', '.join(TOOLS)}")
    p.add_argument("--out", type=Path, default=Path("reports"))
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    add_data_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_profile_parser(commands)
    from bench.compare_cli import add_compare_parser
    from bench.regress import add_regress_parser

    add_compare_parser(commands)
    add_regress_parser(commands)
    report = commands.add_parser(
        "report", help="add the benchmark table to summary.md and draw bench.png",
        description="Read a saved pytest-benchmark run (default: the newest under "
                    "OUT/benchmarks) and write its table into OUT/summary.md and OUT/bench.png.")
    report.add_argument("--json", type=Path, default=None, help="a pytest-benchmark JSON file")
    report.add_argument("--out", type=Path, default=Path("reports"))
    return parser


def _validate_profile(args: argparse.Namespace) -> tuple[torch.device, list[str], dict[str, str]]:
    from bench.publish import check_writable_dir

    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        raise UsageError(str(exc)) from None
    if args.pipelines is None:
        pipelines, skipped = default_pipelines(device)
    else:
        pipelines, skipped = args.pipelines, {}
        for name in pipelines:
            try:
                canonical_name(name)
            except ValueError as exc:
                raise UsageError(f"--pipelines: {exc}") from None
        if len(set(pipelines)) != len(pipelines):
            raise UsageError(f"--pipelines lists a name twice: {','.join(pipelines)}")
    if not pipelines:
        raise UsageError("--pipelines is empty: name at least one pipeline")
    bad = [t for t in args.tools if t not in TOOLS]
    if bad:
        raise UsageError(f"--tools: unknown tool {bad[0]!r}: choose from {', '.join(TOOLS)}")
    if args.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {args.warmup}")
    if args.limit is not None and args.limit < args.batch_size:
        raise UsageError(f"--limit {args.limit} is smaller than one batch (--batch-size "
                         f"{args.batch_size})")
    try:
        check_writable_dir(args.out)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return device, pipelines, skipped


def run_profile(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from bench.publish import publish, staging
    from bench.writers import write_all

    device, pipelines, skipped = _validate_profile(args)
    setup_logging()
    try:
        split = load_mnist(args.data_dir, train=True, dataset=args.dataset,
                           download=args.download, limit=args.limit,
                           progress=not args.no_progress)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    tools = tuple(t for t in TOOLS if t in args.tools)
    specs = [RunSpec(pipeline=name, device=device.type, batch_size=args.batch_size,
                     limit=args.limit, steps=args.steps, warmup=args.warmup, seed=args.seed,
                     threads=args.threads, data_dir=str(args.data_dir), dataset=args.dataset)
             for name in pipelines]
    total = sum(passes_per_run(s, tools) for s in specs)
    report = ProfileReport(runs=[], skipped=skipped)
    with (logging_redirect_tqdm(), tempfile.TemporaryDirectory(prefix="vaebench-") as scratch,
          tqdm(total=total, unit="step", disable=args.no_progress) as bar):
        for spec in specs:
            bar.set_description(spec.pipeline)
            report.runs.append(profile(spec, split, tools, Path(scratch), tick=lambda: bar.update()))
            log.info("%-9s %.2f ms per step (median of %d)", spec.pipeline,
                     report.runs[-1].median_step * 1e3, spec.steps)
        with staging(args.out) as stage:
            write_all(report, stage)
            written = publish(stage, args.out)
    from bench.writers.summary import headline, summary_frame

    print(f"\n{headline(summary_frame(report))}")
    print(f"Wrote {len(written)} files into {args.out}/ (summary: {args.out}/summary.md)")
    print(OPEN_HINTS.format(out=args.out))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from bench import report
    from bench.results import ResultsError, latest

    try:
        path = args.json or latest(args.out / "benchmarks")
        written = report.write(path, args.out)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    print(f"Benchmark table from {path} -> {written[0]}; plot -> {written[1]}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "profile":
            return run_profile(args)
        if args.command == "report":
            return run_report(args)
        if args.command == "regress":
            from bench.regress import run_regress

            return run_regress(args)
        from bench.compare_cli import run_compare

        return run_compare(args)
    except UsageError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the earlier reports were left as they were", file=sys.stderr)
        return 130
