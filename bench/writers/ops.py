"""<pipeline>.ops.txt: torch.profiler's key_averages tables (by operator, by input shape)."""

from __future__ import annotations

from pathlib import Path

from bench.runner import ProfileReport


def write(report: ProfileReport, out: Path) -> list[Path]:
    written = []
    for run in report.runs:
        if "kineto" not in run.passes:
            continue
        tables = run.passes["kineto"].tables
        path = out / f"{run.pipeline}.ops.txt"
        path.write_text(
            f"# torch.profiler operators of {run.pipeline} on {run.spec.device}, "
            f"{len(run.passes['kineto'].step_times)} active steps, sorted by self time\n\n"
            f"{tables['by_op']}\n\n# grouped by input shape\n\n{tables['by_shape']}\n"
        )
        written.append(path)
    return written
