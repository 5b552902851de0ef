"""The table and sentences the CLI prints at the end of a run (and `bench report` prints again),
by the Result's kind."""

from __future__ import annotations

from collections.abc import Callable

from bench.measure.result import Result
from bench.render import memory, script, statements, tries
from bench.render.tables import variants_frame


def _variants(result: Result) -> list[str]:
    frame = variants_frame(result)
    lines = [statements.headline(result), *statements.noise(result)]
    if not frame.empty:
        columns = ["variant", "median_ms", "speedup_vs_baseline", "ci_low", "ci_high", "verdict",
                   *(["verdict_vs_previous"] if result.ordered else [])]
        lines += ["", frame[columns].to_string(index=False, float_format=lambda v: f"{v:.2f}")]
    return lines


def _script(result: Result) -> list[str]:
    return [*script.how_it_ran(result), script.headline(result),
            *script.straggler(result),
            *[line for m in result.measurements for line in memory.oom_lines(result, m.name)]]


def _not_ok(result: Result) -> list[str]:
    return [f"{m.name}: {m.status}: {m.reason}" for m in result.measurements
            if m.status != "ok" and m.bound_of is None]


# What the terminal shows, by the Result's kind: a new kind adds its entry here.
SECTIONS: dict[str, list[Callable[[Result], list[str]]]] = {
    "variants": [_variants, _not_ok],
    "script": [_script],
    "try": [tries.terminal],
    "fit": [memory.fit_lines, _not_ok],
}


def text(result: Result) -> str:
    return "\n".join(line for section in SECTIONS[result.kind] for line in section(result))
