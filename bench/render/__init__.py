"""Renderers: each a function of a Result and a folder, returning the files it wrote.

``RENDERERS`` maps a name to a renderer, one owner per file; adding an output format means
one module and one line here. ``terminal`` is the text the CLI prints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.measure.result import Result
from bench.render import figures, summary, tables

Renderer = Callable[[Result, Path], list[Path]]

RENDERERS: dict[str, Renderer] = {
    "summary.md": summary.write,
    "summary.csv": tables.write_summary_csv,
    "variants.csv": tables.write_variants,
    "ladder.csv": tables.write_ladder,  # only for a workload whose variants form a ladder
    "figures": figures.write,
}


def render_all(result: Result, out: Path) -> list[Path]:
    written: list[Path] = []
    for renderer in RENDERERS.values():
        written.extend(renderer(result, out))
    return written
