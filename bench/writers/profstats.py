"""<pipeline>.prof: cProfile of the measured steps, for ``snakeviz reports/<pipeline>.prof``."""

from __future__ import annotations

from pathlib import Path

from bench.runner import ProfileReport


def write(report: ProfileReport, out: Path) -> list[Path]:
    written = []
    for run in report.runs:
        if "cprofile" in run.passes:
            path = out / f"{run.pipeline}.prof"
            run.passes["cprofile"].artifact.dump_stats(str(path))
            written.append(path)
    return written
