"""Renderers: each a function of a Result and a folder, returning the files it wrote.

``RENDERERS`` maps a name to a renderer, one owner per file; adding an output format means
one module and one line here. ``terminal`` is the text the CLI prints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.measure.result import Result
from bench.ranks import merged_trace
from bench.render import figures, html, memory, readme, summary, tables, tries

Renderer = Callable[[Result, Path], list[Path]]

RENDERERS: dict[str, Renderer] = {
    "summary.md": summary.write,
    "summary.csv": tables.write_summary_csv,
    "variants.csv": tables.write_variants,
    "figures": figures.write,
    merged_trace.NAME: merged_trace.write,  # several ranks only
}
# A kind whose files differ: its own renderer per file (the others keep RENDERERS').
BY_KIND: dict[str, dict[str, Renderer]] = {
    "try": {"summary.md": summary.write, "summary.csv": tries.write_csv, "figures": tries.write_figure},
    "fit": {"summary.md": summary.write, "summary.csv": memory.write_fit_csv},
}

# every file a renderer may write: one a re-run does not write again is an earlier run's, and goes
OWNED = ("summary.md", "summary.csv", "variants.csv", "speedup.png", "breakdown.png", merged_trace.NAME,
         "report.html", "README.md")


def render_all(result: Result, out: Path, final: Path | None = None, *, rerender: bool = False
               ) -> list[Path]:
    """Every renderer into ``out``, then report.html (which reads the profilers' files) and
    README.md (which lists every file); ``final`` is where ``out``'s files will be moved (a
    staging folder's target), and where a re-render finds the profilers' files."""
    written: list[Path] = []
    for renderer in BY_KIND.get(result.kind, RENDERERS).values():
        written.extend(renderer(result, out))
    written += html.write(result, out, final)
    return written + readme.write(result, out, final, rerender=rerender)
