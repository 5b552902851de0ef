"""Where a step's memory goes (:mod:`bench.measure.memory`), rendered: the headline's clause,
summary.md's section and report.html's stacked bars, table and curve; an out-of-memory run
explained (:mod:`bench.capture.oom`); what batch fits (:mod:`bench.measure.fits`)."""

from __future__ import annotations

from html import escape
from pathlib import Path

import pandas as pd

from bench.measure import derive
from bench.measure.memory import OBJECTS, STEP, grown
from bench.measure.memory import size_text as _size
from bench.measure.result import Result
from bench.render import svg
from bench.render.page import cell, table

METHOD = ("Live tensor bytes at the step's peak (the allocator's own allocations and frees over one "
          "profiled step, after a priming one: operator granularity), split by what each block is: "
          "parameters, their gradients and the optimizers' state from the objects the script built "
          "(each storage once: tied weights and views counted once); activations: storages saved for "
          "backward (a `saved_tensors_hooks` pack hook) from their saving to the end of the backward "
          "node that last read them; other tensors: alive since before the step (a data set held as a "
          "tensor, buffers); temporaries: the rest (the batch, outputs, the gradients flowing back, an "
          "optimizer's scratch). The parts sum to the peak. Taken in steps of its own, right after the "
          "warm-up: none of them is a measured step.")


PHASES = {"data": "#e0f0ff", "forward": "#fff3cd", "backward": "#fde2e1", "optimizer": "#e2f5e2"}


def _mb(x: float) -> str:
    return f"{x:,.1f}" if x >= 0.1 or x == 0 else f"{x:.3f}"


def clause(result: Result, name: str) -> str:
    """The headline's words: "tensors at the step's peak 5.3 MB (in backward)"."""
    found = result[name].footprint.breakdown
    if found is None or derive.breakdown_mb(result, name) is None:  # none, or its step's rise only
        return ""
    at = f", in {found.at}" if found.at else ""
    largest = max(found.parts, key=found.parts.get)
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
        lines += [frame.to_markdown(index=False), "", METHOD, "", *_allocator(result),
                  *[f"- `{n}`: {found.caveat}." for n, _ in rows
                    if (found := result[n].footprint.breakdown) and found.caveat]]
    lines += [f"- `{n}`: no memory breakdown: {why}." for n, why in errors]
    return lines + ([""] if errors else [])


def _allocator(result: Result) -> list[str]:
    """On CUDA, the allocator's own figures beside the breakdown: its peak of allocated bytes over
    the read step, what it reserved (the rest of the reserved is its slack: fragmentation), and
    the device's capacity."""
    said = []
    for n in result.measured:
        found = result[n].footprint.breakdown
        cuda = found.cuda if found is not None else {}
        if cuda.get("max_allocated") and cuda.get("max_reserved"):
            slack = 1 - cuda["max_allocated"] / cuda["max_reserved"]
            said.append(f"- `{n}` on the GPU: the allocator's peak {_size(cuda['max_allocated'])} allocated, "
                        f"{_size(cuda['max_reserved'])} reserved ({slack:.0%} of it slack), of the device's "
                        f"{_size(cuda.get('capacity', 0))}.")
    return [*said, ""] if said else []


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


def oom_lines(result: Result, name: str) -> list[str]:
    """Out of memory, explained: where, how much it asked for, what was live, what grew since the
    last measured step's peak."""
    m = result[name]
    oom = m.process.oom if m.process else None
    if oom is None:
        return []
    where = f" at `{oom.line}`" + (f" (`{oom.code}`)" if oom.code else "") if oom.line else ""
    asked = f", asking for {_size(oom.asked)}" if oom.asked else ""
    when = (f" in {oom.phase} of its step {oom.step}" if oom.phase else f" in its step {oom.step}") \
        if oom.step > 0 else " before its first step"
    lines = [f"`{name}` ran out of memory{when}{where}{asked} ({oom.device}: {oom.message})."]
    if oom.live:
        held = ", ".join(f"{p} {_size(oom.live.get(p, 0))}" for p in (*OBJECTS, STEP) if p in oom.live
                         or p in OBJECTS)
        own = ("the step's own: alive now, not before the step -- its batch, outputs, what its frames "
               "hold" if STEP in oom.live else "no step had been measured before it, so its batch and "
               "outputs are among the other tensors" if oom.step > 0 else "no step had begun")
        lines.append(f"Live when it failed, found through the objects: {held} ({own}); what autograd's "
                     "graph alone holds the objects do not show" + (
                         f" -- the allocation that failed was {_size(oom.asked)}" if oom.asked else "") + ".")
    if oom.largest:
        lines.append("The largest of them besides parameters, gradients and optimizer state: "
                     + "; ".join(oom.largest) + ".")
    found = m.footprint.breakdown
    if found is not None:
        # against the same parts at that step's start (its peak may fall where gradients are freed)
        grew = grown(oom.live, oom.before or found.parts)
        lines.append(f"The step measured for memory peaked at {_size(found.peak)} ("
                     + ", ".join(f"{p} {_size(v)}" for p, v in found.parts.items() if v) + ")"
                     + ("; since its start " + ", ".join(f"{p} grew by {_size(v)}" for p, v in grew.items())
                        if grew else "; no parameter, gradient, optimizer state or tensor kept across "
                        "steps grew since its start") + ".")
    if oom.batch and m.batch_size and m.samples and oom.batch != m.batch_size:  # against measured steps only
        lines.append(f"The failing step's batch: {oom.batch:,}, against {m.batch_size:,} in the measured "
                     "steps: activations and temporaries grow with it.")
    if oom.snapshot:
        lines.append(f"The allocator's history: `{oom.snapshot}` (open it at https://pytorch.org/memory_viz).")
    return lines


def oom_html(result: Result, root: Path) -> list[str]:
    from bench.render.page import inline

    said = [line for n in result.measurements for line in oom_lines(result, n.name)]
    return ["<h2>Out of memory</h2>", *[f"<p>{inline(line)}</p>" for line in said]] if said else []


def oom_markdown(result: Result) -> list[str]:
    said = [line for n in result.measurements if (lines := oom_lines(result, n.name)) for line in lines]
    return ["## Out of memory", "", *said, ""] if said else []


def fit_lines(result: Result) -> list[str]:
    """What batch fits, in words (:mod:`bench.measure.fits`)."""
    from bench.measure.fits import CHECK_WITHIN, fit

    found = fit(result)
    if found is None:
        said = [f"No line: {why}." for why in result.partial.values()]
        return said or ["No line: fewer than two sizes measured."]
    a, b = found.sizes[:2]
    lines = [f"Linear in the batch, measured at {a} and {b}: the step's peak is {_size(found.fixed)} + "
             f"{_size(found.per_sample)} a sample."]
    if found.largest is None:
        lines.append("No largest batch follows: " + (
            "the peak does not grow with the batch here." if found.per_sample <= 0 else
            f"the memory there is ({_size(found.capacity)}: {found.capacity_source}) does not hold even "
            "the part that does not grow with the batch."))
    else:
        lines.append(f"The largest batch that fits: about {found.largest:,} ({_size(found.capacity)} for "
                     f"tensors: {found.capacity_source}).")
    if found.error is not None and found.predicted is not None:
        verdict = "the line holds" if found.holds else f"the line does not hold to {CHECK_WITHIN:.0%}"
        lines.append(f"Checked at batch {found.sizes[2]}: measured {_size(found.peaks[2])}, the line says "
                     f"{_size(found.predicted)} ({found.error:+.1%}): {verdict}.")
    lines += [f"{why[:1].upper()}{why[1:]}." for key, why in result.partial.items() if key == "fit/check"]
    return lines + _fixes_fit(result, found.largest)


def _fixes_fit(result: Result, largest: int | None) -> list[str]:
    """The batch each fix asked for lets through (its own line at the script's batch and twice it)."""
    from bench.measure.fits import with_fixes

    said = []
    for name, found in with_fixes(result).items():
        gain = f", {found.largest / largest:.2f}x the script's" if found.largest and largest else ""
        lets = f"about {found.largest:,}{gain}" if found.largest else "no largest batch follows"
        said.append(f"With `{name}` (measured at {found.sizes[0]} and {found.sizes[1]}, not checked at a "
                    f"third size): {_size(found.fixed)} + {_size(found.per_sample)} a sample; the largest "
                    f"batch: {lets}.")
    said += [f"`{key.removeprefix('fit/')}`: {why}." for key, why in result.partial.items()
             if key.startswith("fit/") and key not in ("fit/check", "fit/batch", "fit/memory")
             and not key.startswith("fit/batch ")]
    return said


def fit_markdown(result: Result) -> list[str]:
    return ["## What batch fits", "", " ".join(fit_lines(result)), ""]


def fit_html(result: Result, root: Path) -> list[str]:
    from bench.render.page import inline

    return ["<h2>What batch fits</h2>", f"<p>{inline(' '.join(fit_lines(result)))}</p>"]


def write_fit_csv(result: Result, out: Path) -> list[Path]:
    """summary.csv of a ``fit`` run: a row per batch size (its peak, parts and median step), the
    line's prediction beside each (no speedups: batch sizes are not alternatives to rank)."""
    from bench.measure.fits import fit

    found = fit(result)
    rows = []
    for m in result.measurements:
        parts = derive.breakdown_mb(result, m.name) or {}
        batch = m.notes.get("batch")
        line = (found.fixed + found.per_sample * batch) / 2**20 if found and batch else None
        rows.append({"batch": batch, "status": m.status,
                     "step_ms_median": derive.step_seconds(result, m.name) * 1e3 if m.samples else None,
                     "tensors_peak_mb": sum(parts.values()) if parts else None,
                     **{f"tensors_{derive.column(p)}_mb": v for p, v in parts.items()},
                     "line_peak_mb": line, "max_rss_mb": m.footprint.max_rss_mb,
                     "largest_batch": found.largest if found else None,
                     "machine": result.machine.describe(), "created": result.created})
    path = out / "summary.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return [path]
