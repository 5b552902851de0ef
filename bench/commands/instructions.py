"""``instructions``: the CPU instructions of one fetch and one step of each variant, counted under
callgrind into a pytest-benchmark file with an ``instructions`` section and no timed benchmarks,
which ``compare`` judges with the exact rule of :mod:`bench.instructions.compare`."""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from bench.commands.args import Defaults
from bench.defaults import BUILTIN, BUILTIN_SUITE_VARIANTS
from bench.errors import UsageError
from bench.options import WORKLOAD_OPTIONS, add_options
from plumbing.argtypes import positive_int
from plumbing.files import write_atomic


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "instructions", help="count the CPU instructions of one fetch and one step of each variant "
                             "(callgrind)",
        description="Run the workload under Valgrind's callgrind and count the instructions of "
                    "--fetches fetches and of one training step of each variant, --repeats times "
                    "(one thread, on the CPU). Counts are exact where timings are noisy: compare "
                    "two count files with `bench compare`; `bench regress` runs this for both "
                    "sides. Needs valgrind (apt-get install valgrind).",
        formatter_class=Defaults)
    # default variants of the built-in workload: its five ladder rungs and resident+fused
    add_options(p.add_argument, WORKLOAD_OPTIONS, limit=2000)
    p.add_argument("--repeats", type=positive_int, default=2,
                   help="counts of each region (median kept; repeats agree within 0.01%% for a step, "
                        "~0.4%% for a small fetch, far inside the 1%% that `compare` calls)")
    p.add_argument("--fetches", type=positive_int, default=10, help="fetches in one fetch region")
    p.add_argument("--json", type=Path, default=Path("reports/instructions.json"), help="where the counts go")
    p.add_argument("--no-progress", action="store_true")



def instructions_document(counts: Any) -> dict[str, Any]:  # counts: bench.instructions.count.Counts
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


def main(args: argparse.Namespace) -> int:
    from bench.instructions.count import CountError, count_instructions, missing_tool
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
            counts = count_instructions(args.workload, variants, data_dir=args.data_dir, dataset=args.dataset,
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
