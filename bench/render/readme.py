"""README.md of a run folder: what made it, and each file there with the tool that opens it.

Written last, from the files the other renderers and the profilers left in the folder, so it
lists what is there and nothing else. The full reference is docs/outputs.md of the repository.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from bench.measure.result import Result

# pattern (relative to the run folder) -> (what it is, how to open it); first match wins
FILES: tuple[tuple[str, str, str], ...] = (
    ("report.html", "the run on one page: the finding, intervals, parts, every step, top functions and "
                    "operators (self-contained, works offline)", "any web browser (`file://`)"),
    ("run.json", "the run: what was asked, the machine, every raw sample; everything else is "
     "rendered from it", "`python -m bench report {out}/run.json` re-renders it"),
    ("summary.md", "the finding, the variants with 95% intervals, where the step goes, the noise",
     "any Markdown viewer"),
    ("summary.csv", "one row per variant, rank or tried fix: medians or speedups, shares, overheads",
     "`pandas.read_csv`"),
    ("variants.csv", "one row per variant: median step, speedup with its interval, verdict, "
     "throughput, memory, MFU", "`pandas.read_csv`"),
    ("*.png", "figures: speedup with intervals, where each step goes", "an image viewer"),
    ("*.prof", "cProfile of the profiled steps", "`snakeviz {path}` (`snakeviz -s` on a headless machine)"),
    ("*.lprof", "line_profiler timings", "`python -m line_profiler {path}`"),
    ("*.lines.txt", "line_profiler timings as text", "any text viewer"),
    ("*.ops.txt", "torch.profiler operators by self time", "any text viewer"),
    ("*.memory.pickle", "the CUDA allocator's history", "drag into pytorch.org/memory_viz"),
    ("tb/*", "Kineto traces", "`tensorboard --logdir {out}/tb` (PYTORCH_PROFILER tab), or "
     "ui.perfetto.dev, or Holistic Trace Analysis"),
    ("ranks.trace.json", "every rank's steps, parts, collectives and waits on one clock (aligned on the "
     "collectives' ends), one process per rank", "ui.perfetto.dev (Open trace file), or `chrome://tracing`"),
    ("compare.md", "`run --compare`: B / A with its interval and verdict", "any Markdown viewer"),
)
VIEWERS = "snakeviz and torch-tb-profiler come with `pip install vaebench[viewers]`."


TITLE = "# A vaebench run"


def is_ours(path: Path) -> bool:
    """Whether the README.md at ``path`` is a run's (its title), not a user's own file."""
    try:
        return path.read_text(errors="replace").startswith(TITLE)
    except OSError:
        return False


def write(result: Result, out: Path, final: Path | None = None, *, rerender: bool = False) -> list[Path]:
    """README.md into ``out``; ``final``: the folder it will be moved into, whose README.md, when
    it is not a run's own (a user's file), is left alone: nothing is written then. ``rerender``:
    the profilers' files are already in ``final`` (`bench report`), list them too."""
    earlier = (final or out) / "README.md"
    if earlier.is_file() and not is_ours(earlier):
        return []
    rows: dict[str, list[str]] = {}
    roots = [out, *([final] if rerender and final is not None else [])]
    found = {p.relative_to(root).as_posix() for root in roots for p in root.rglob("*") if p.is_file()}
    for rel in sorted(found):
        if rel.startswith(".") or rel == "README.md":
            continue
        pattern = next((f for f in FILES if fnmatch.fnmatch(rel, f[0])), None)
        if pattern is not None:
            rows.setdefault(pattern[0], []).append(rel)
    env = result.machine
    lines = [TITLE, "",
             f"{result.spec.title()}, started {result.created} on {env.describe()}. "
             "Start with `summary.md`.", "",
             "| file | what it is | open it with |", "| --- | --- | --- |"]
    for pattern, what_it_is, opener in FILES:
        found = rows.get(pattern)
        if not found:
            continue
        if pattern == "tb/*":
            found = ["tb/"]
        more = f" (+{len(found) - 4} more)" if len(found) > 4 else ""
        shown = ", ".join(f"`{f}`" for f in found[:4]) + more
        lines.append(f"| {shown} | {what_it_is} | {opener.format(out='.', path=found[0])} |")
    lines += ["", "Paths are relative to this folder. " + VIEWERS + " What every file holds: "
              "docs/outputs.md in the vaebench repository; how the figures are measured: docs/method.md."]
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return [path]
