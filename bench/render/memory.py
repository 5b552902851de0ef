"""Where a step's memory goes (:mod:`bench.measure.memory`), rendered: the headline's clause,
summary.md's section and report.html's stacked bars with their table."""

from __future__ import annotations

from html import escape
from pathlib import Path

import pandas as pd

from bench.measure import derive
from bench.measure.result import Result
from bench.render import svg
from bench.render.page import cell, table

METHOD = ("Live tensor bytes at the step's peak (the allocator's own allocations and frees over one "
          "profiled step, after a priming one: operator granularity), split by what each block is: "
          "parameters, their gradients and the optimizers' state from the objects the script built "
          "(each storage once: tied weights and views counted once); activations: storages saved for "
          "backward (a `saved_tensors_hooks` pack hook) from their saving to their last read; other "
          "tensors: alive since before the step (a data set held as a tensor, buffers); temporaries: "
          "the rest (the batch, outputs, the gradients flowing back, an optimizer's scratch). The parts "
          "sum to the peak. Taken in a window of its own: the measured steps pay nothing for it.")


PHASES = {"data": "#e0f0ff", "forward": "#fff3cd", "backward": "#fde2e1", "optimizer": "#e2f5e2"}


def _mb(x: float) -> str:
    return f"{x:,.1f}" if x >= 0.1 or x == 0 else f"{x:.3f}"


def clause(result: Result, name: str) -> str:
    """The headline's words: "tensors at the step's peak 5.3 MB (in backward)"."""
    found = result[name].footprint.breakdown
    if found is None:
        return ""
    at = f", in {found.at}" if found.at else ""
    largest = max(found.parts, key=lambda p: found.parts[p]) if found.parts else ""
    return (f"{found.peak / 2**20:,.1f} MB of tensors at the step's peak{at} (most of it {largest}: "
            f"{found.parts.get(largest, 0) / 2**20:,.1f} MB)")


def _rows(result: Result) -> list[tuple[str, dict[str, float]]]:
    return [(n, parts) for n in result.measured if (parts := derive.breakdown_mb(result, n)) is not None]


def markdown(result: Result) -> list[str]:
    rows = _rows(result)
    errors = [(n, result[n].footprint.breakdown_error) for n in result.measured
              if result[n].footprint.breakdown is None and result[n].footprint.breakdown_error]
    if not rows and not errors:
        return []
    lines = ["## Where the memory goes", ""]
    if rows:
        frame = pd.DataFrame([{"name": n, "peak MB": _mb(found.peak / 2**20), "at": found.at or "-",
                               **{f"{p} MB": _mb(v) for p, v in parts.items()},
                               "saved for backward, most MB": _mb(found.saved_max / 2**20)}
                              for n, parts in rows if (found := result[n].footprint.breakdown)])
        lines += [frame.to_markdown(index=False), "", METHOD, ""]
    lines += [f"- `{n}`: no memory breakdown: {why}." for n, why in errors]
    return lines + ([""] if errors else [])


def html(result: Result, root: Path) -> list[str]:
    rows = _rows(result)
    if not rows:
        return []
    cells = [[cell(n), cell(sum(parts.values()), "{:,.2f}"), *[cell(v, "{:,.2f}") for v in parts.values()]]
             for n, parts in rows]
    bars = svg.stacked(rows, "MB of tensors at the step's peak", unit="MB")
    return ["<h2>Where the memory goes</h2>", bars,
            table(["name", "peak MB", *[f"{p} MB" for p in rows[0][1]]], cells, METHOD), *_curves(result)]


def _curves(result: Result) -> list[str]:
    """How live memory moves through the step: forward rises, backward falls (shaded by part)."""
    out = []
    for n in result.measured:
        found = result[n].footprint.breakdown
        if found is not None and len(found.curve) > 1:
            out += [f"<h3>Live tensors through one step: {escape(n)}</h3>",
                    svg.timeline({n: found.curve}, f"{n}: live MB through one step", found.phases, unit="MB",
                                 axis=f"time through the step; MB above the {found.floor / 2**20:,.1f} MB "
                                      "that stay through it (shaded: data, forward, backward, optimizer)",
                                 colors=PHASES)]
    return out
