"""The table and sentences the CLI prints at the end of a run (and `bench report` prints again)."""

from __future__ import annotations

from bench.measure.result import Result
from bench.render import statements
from bench.render.tables import ladder_frame


def text(result: Result) -> str:
    frame = ladder_frame(result)
    lines = [statements.headline(result), *statements.noise(result)]
    if not frame.empty:
        shown = frame[["variant", "median_ms", "speedup_vs_baseline", "ci_low", "ci_high",
                       "verdict_vs_previous"]]
        lines += ["", shown.to_string(index=False, float_format=lambda v: f"{v:.2f}")]
    for v in result.variants:
        if result.status.get(v) != "ok":
            lines.append(f"{v}: {result.status.get(v)}: {result.reasons.get(v, '')}")
    return "\n".join(lines)
