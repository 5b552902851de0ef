"""One writer per artifact. Each takes the ProfileReport and a folder, returns what it wrote.

``WRITERS`` maps a name to a writer; ``get_writer`` lists the valid names when given a wrong
one. Adding an output format means adding one module and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.runner import ProfileReport
from bench.writers import kineto, lines, ops, plots, profstats, summary

Writer = Callable[[ProfileReport, Path], list[Path]]

WRITERS: dict[str, Writer] = {
    "prof": profstats.write,
    "lines": lines.write,
    "traces": kineto.write,
    "ops": ops.write,
    "summary": summary.write,
    "plots": plots.write,
}


def get_writer(name: str) -> Writer:
    if name not in WRITERS:
        raise ValueError(f"unknown writer {name!r}: choose one of {', '.join(WRITERS)}")
    return WRITERS[name]


def write_all(report: ProfileReport, out: Path) -> list[Path]:
    """Run every writer into ``out``; writers with nothing to write return no paths."""
    written: list[Path] = []
    for writer in WRITERS.values():
        written.extend(writer(report, out))
    return written
