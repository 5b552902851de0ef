"""The table and sentences the CLI prints at the end of a run (and `bench report` prints again)."""

from __future__ import annotations

from bench.measure.result import Result
from bench.render import capture, statements
from bench.render.tables import variants_frame


def text(result: Result) -> str:
    if capture.is_capture(result):
        return "\n".join([*capture.how_it_ran(result), capture.headline(result),
                          *[line for line in capture.ranks(result) if line.startswith("**")
                            or line.startswith("No straggler")]])
    frame = variants_frame(result)
    lines = [statements.headline(result), *statements.noise(result)]
    if not frame.empty:
        columns = ["variant", "median_ms", "speedup_vs_baseline", "ci_low", "ci_high", "verdict",
                   *(["verdict_vs_previous"] if result.ordered else [])]
        lines += ["", frame[columns].to_string(index=False, float_format=lambda v: f"{v:.2f}")]
    for v in result.variants:
        if result.status.get(v) != "ok":
            lines.append(f"{v}: {result.status.get(v)}: {result.reasons.get(v, '')}")
    return "\n".join(lines)
