"""<pipeline>.lprof and <pipeline>.lines.txt: line_profiler of the fetch and the train step.

``python -m line_profiler reports/<pipeline>.lprof`` shows the saved file again.
"""

from __future__ import annotations

from pathlib import Path

from bench.runner import ProfileReport


def write(report: ProfileReport, out: Path) -> list[Path]:
    written = []
    for run in report.runs:
        if "lines" not in run.passes:
            continue
        profiler = run.passes["lines"].artifact
        lprof, text = out / f"{run.pipeline}.lprof", out / f"{run.pipeline}.lines.txt"
        profiler.dump_stats(str(lprof))
        with open(text, "w") as fh:
            fh.write(f"# line_profiler of {run.pipeline}: {run.spec.steps} steps, {run.dataset}\n")
            profiler.print_stats(stream=fh, output_unit=1e-3, stripzeros=True)
        written += [lprof, text]
    return written
