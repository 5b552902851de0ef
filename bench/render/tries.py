"""A ``try`` Result rendered: the table of fixes (speedup with its 95% interval, verdict,
samples/s, memory, one-off cost, payback, numerics, the edit), the A/A as the run's noise, the
combination and the one recommendation drawn from its own measurement, and what was skipped and
why. The Markdown, terminal, CSV, figure and HTML of this kind all read :func:`tries.rows`."""

from __future__ import annotations

from html import escape
from pathlib import Path

import pandas as pd

from bench.measure import advice, derive, tries
from bench.measure.result import Result
from bench.measure.rule import Rule
from bench.measure.specs import window_pairs
from bench.measure.tries import Row
from bench.render import page, svg

COLUMNS = ("fix", "speedup (95% CI)", "verdict", "measured", "samples/s", "memory", "one-off", "payback",
           "numerics", "the edit")


_speedup = advice.speedup_text


def _signed(x: float, digits: int) -> str:
    """``+1.25``, ``-0.40``, and ``0`` for what rounds to nothing (no ``-0``)."""
    shown = f"{x:+.{digits}f}"
    return "0" if float(shown) == 0 else shown


def _how(r: Row) -> str:
    """How the fix was measured, with the spread across its blocks where it was switched."""
    spread = r.spread
    return r.how + (f" (blocks {spread[0]:.2f}-{spread[1]:.2f})" if spread else "")


def _payback(result: Result, r: Row) -> float | None:
    base = tries.baseline_step(result, 2 if r.name == tries.COMBINED else 1)
    return r.payback_steps(base) if base else None


def _cells(result: Result, r: Row) -> list[str]:
    payback = _payback(result, r)
    one_off = "" if r.one_off_s is None else f"{_signed(r.one_off_s, 2)} s"
    verdict = f"failed: {r.failed}" if r.failed and not r.comparison else r.verdict
    verdict += " (not recommended: it changes the result)" if r.diverged and r.comparison else ""
    return [r.name, _speedup(r), verdict, _how(r),
            f"{r.samples_per_s:.0f}" if r.samples_per_s else "-",
            _memory(r), one_off,
            f"{payback} step{'s' if payback != 1 else ''}" if payback else "", r.numerics,
            f"`{r.edit}`" if r.edit else ""]


def _memory(r: Row) -> str:
    """The process's max RSS change, and the tensors' parts at the step's peak that moved by a
    tenth of a MB or more ("tensors: activations -3.1 MB")."""
    rss = "" if r.memory_mb is None else f"{_signed(r.memory_mb, 0)} MB"
    moved = [f"{p} {_signed(v, 1)} MB" for p, v in r.tensors_mb.items() if abs(v) >= 0.1]
    return rss + (f" (tensors at the peak: {', '.join(moved)})" if moved else "")


def _per_process(result: Result) -> dict[str, list[float]]:
    """Each side's processes' median steps (ms), in the order they ran."""
    out: dict[str, list[float]] = {}
    for m in result.measurements:
        side = m.notes.get("side", "")
        if side != tries.SWITCHES and not m.notes.get("numerics") and m.status == "ok" and m.samples:
            out.setdefault("A" if result.spec.versus and side == tries.BASELINE else side, []).append(
                tries.median_step(m) * 1e3)
    return out


def _compare_notes(result: Result) -> list[str]:
    spec = result.spec
    steps = _per_process(result)
    return [f"A: python {' '.join(spec.command)}", f"B: python {' '.join(spec.versus)}",
            "median step per process (ms): " + "; ".join(
                f"{side} {', '.join(f'{s:.2f}' for s in steps.get(side, []))}" for side in ("A", "B")),
            f"Each process: {spec.warmup} warm-up + {spec.steps} measured steps, its median one sample; "
            f"{spec.repeats} processes a side alternated (A B, B A, ...), by the rule `regress` applies.",
            *_batches(result)]


def _batches(result: Result) -> list[str]:
    """The samples a step of each side, where they differ (B / A is then per sample)."""
    b = next((r for r in tries.rows(result) if r.name == "B"), None)
    if b is None or not b.batches:
        return []
    sides = zip("AB", b.batches, strict=True)
    return ["samples a step: " + "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in sides)
            + ": B / A is the time per sample"]


def _notes(result: Result) -> list[str]:
    spec = result.spec
    if spec.versus:
        return _compare_notes(result)
    again = next((r for r in tries.rows(result) if r.name == tries.AGAIN), None)
    lines = []
    base = tries.baseline_step(result)
    if base:
        rate = tries.baseline_rate(result)
        per_s = f", {rate:.0f} samples/s" if rate else ""
        lines.append(f"The baseline: median step {base * 1e3:.2f} ms{per_s}.")
    if again is not None and again.speedup:
        lines.append(f"The A/A (the baseline against itself) reads {_speedup(again)}, {again.verdict}: "
                     "the run's own noise.")
    unsteady = _unsteady(result)
    if unsteady:
        lines.append(unsteady)
    det = tries.deterministic(result)
    if det is False:
        lines.append(f"With --seed {spec.seed} two baseline processes gave different losses: the script is "
                     f"not deterministic; losses are compared within {spec.tolerance:.0%} beyond its "
                     "own spread.")
    elif det:
        lines.append(f"With --seed {spec.seed} the baseline's processes gave the same losses, bit for bit.")
    if spec.nproc:
        lines.append(f"Each process is a torchrun job of {spec.nproc} ranks: rank 0's steps are its "
                     "sample and rank 0's losses are compared (in synchronous training every rank steps "
                     "together); a fix is applied in every rank, and every rank switches at the same "
                     "step; samples/s are the job's (every rank's batch).")
    if spec.switched:
        lines.append(f"In-process pairs ({', '.join(spec.switched)}, the A/A): in the script's own "
                     f"process, each fix switched on and off between single steps ({spec.pairs} pairs a "
                     "fix per block; a DataLoader's options and threads in windows of 8 steps after a "
                     f"few left out, {window_pairs(spec.pairs)} pairs; the order in each pair random, the "
                     "switch flipped outside "
                     f"the timed steps), after {spec.switch_warm} steps with it on; the speedup is the "
                     f"blocks' geometric mean, its 95% interval taken across the {spec.blocks} blocks "
                     "(their spread shown), not from the pooled pairs: the ratio moves with the "
                     "machine's state from block to block.")
    for why in tries.script_failures(result):
        lines.append(f"The script itself failed in a process of the switches ({why}), with no switch "
                     "newly on: the blocks before it are kept; run it with plain `vaebench run` to see why.")
    if any(f.startswith(("num_workers", "pin_memory")) for f in spec.switched):
        lines.append("While a DataLoader's option is on, the script's batches come from a twin loader over "
                     "the same dataset and its own loader waits: its epochs ran longer by those steps.")
    others = [f for f in spec.fixes if f not in spec.switched]
    if others:
        lines.append(f"In processes ({', '.join(others)}: not switched in place): "
                     f"{spec.warmup} warm-up + {spec.steps} measured steps a process, its median one "
                     f"sample; {spec.repeats} processes a side in rotated order against the baseline's, "
                     "by the rule `regress` applies (>5%, one-sided Mann-Whitney p < 0.01, the interval "
                     "beyond 1).")
    lines.append("`unchanged`: the whole interval within +-5%; `not measurable`: it holds 1 and reaches "
                 "beyond +-5%. Numerics: the first losses of short seeded runs against the baseline's.")
    return lines


def _unsteady(result: Result) -> str:
    """Why verdicts read "not measurable", when the processes of a side spread too far."""
    wide = tries.unsteady(result)
    if not wide:
        return ""
    said = "; ".join(f"{side} {spread:.0%} ({low * 1e3:.2f}-{high * 1e3:.2f} ms)"
                     for side, (spread, low, high) in wide.items())
    return (f"Not measurable where said: the processes of a side spread by more than "
            f"{Rule().max_spread:.0%} (IQR/median of their median steps): {said}. The machine's "
            "speed changed between processes, more than the fixes change the step; re-run on a quieter "
            "machine, or with more --repeats.")


def markdown(result: Result) -> list[str]:
    env = result.machine
    found = tries.rows(result)
    lines = [f"{result.spec.title()}, started {result.created} on {env.describe()}, Python {env.python}.",
             "", f"**{advice.recommendation(result)}**", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(result, r)) + " |" for r in found]
    saving = advice.memory_savers(result)
    lines += ["", *(f"- {n}" for n in [*_notes(result), *([saving] if saving else [])]), ""]
    if result.spec.skipped:
        lines += ["Not tried:", *(f"- {s}" for s in result.spec.skipped), ""]
    lines += [f"- Stopped early: {why}" for why in result.partial.values()]
    return lines


def terminal(result: Result) -> list[str]:
    found = tries.rows(result)
    width = max([len(r.name) for r in found] + [4])
    lines = [advice.recommendation(result), ""]
    for r in found:
        lines.append(f"  {r.name:<{width}}  {_speedup(r):<22} {r.verdict:<15} {_how(r):<40} {r.numerics}")
    notes = _notes(result)
    unsteady = _unsteady(result)
    if result.spec.versus:
        return [*notes[:3], lines[0]]
    failed = [n for n in notes if n.startswith("The script itself failed")]
    return [*lines, "", *notes[:2], *([unsteady] if unsteady and unsteady not in notes[:2] else []), *failed,
            *(f"Stopped early: {why}" for why in result.partial.values())]


def frame(result: Result) -> pd.DataFrame:
    rows = []
    for r in tries.rows(result):
        s = r.speedup or (float("nan"),) * 3
        spread = r.spread or (None, None)
        rows.append({"fix": r.name, "group": r.group, "measured": r.how, "processes": r.processes,
                     "blocks": len(r.blocks) or None, "block_speedup_min": spread[0],
                     "block_speedup_max": spread[1], "speedup": s[0],
                     "speedup_ci_low": s[1], "speedup_ci_high": s[2], "verdict": r.verdict,
                     "p_faster": r.comparison.p_faster if r.comparison else None,
                     "samples_per_s": r.samples_per_s, "memory_mb_change": r.memory_mb,
                     **{f"tensors_{derive.column(p)}_mb_change": v for p, v in r.tensors_mb.items()},
                     "one_off_s": r.one_off_s, "numerics": r.numerics, "edit": r.edit, "failed": r.failed,
                     "machine": result.machine.describe(), "created": result.created})
    return pd.DataFrame(rows)


def write_csv(result: Result, out: Path) -> list[Path]:
    path = out / "summary.csv"
    frame(result).to_csv(path, index=False, float_format="%.6g")
    return [path]


def intervals(result: Result) -> list[svg.Interval]:
    return [svg.Interval(r.name, *r.speedup, r.verdict) for r in tries.rows(result) if r.speedup]


def write_figure(result: Result, out: Path) -> list[Path]:
    """speedup.png: each fix's speedup with its interval, against 1.0."""
    rows = intervals(result)
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.4))
    for y, r in enumerate(rows):
        ax.errorbar(r.value, y, xerr=[[r.value - r.low], [r.high - r.value]], fmt="o", capsize=4)
    ax.axvline(1.0, color="grey", linestyle="--")
    ax.set_yticks(range(len(rows)), [r.label for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("speedup over the baseline (95% CI); > 1 is faster")
    ax.set_title(f"{result.spec.name} on {result.machine.describe()}", fontsize=9)
    fig.tight_layout()
    path = out / "speedup.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


HTML_COLUMNS = ("fix", "speedup", "95% CI", "verdict", "measured", "samples/s", "memory (MB)", "one-off (s)",
                "payback (steps)", "numerics", "the edit")


def _html_row(result: Result, r: Row) -> list[str]:
    """The table's cells, numbers as numbers (the page sorts by them)."""
    shown = _cells(result, r)
    s = r.speedup
    one_off = None if r.one_off_s is None else float(_signed(r.one_off_s, 2))  # never "-0.00"
    return [page.cell(r.name), page.cell(s[0] if s else None, "{:.3f}"),
            page.cell(f"{s[1]:.3f}-{s[2]:.3f}" if s else None), page.cell(shown[2]), page.cell(shown[3]),
            page.cell(r.samples_per_s, "{:,.0f}"), page.cell(r.memory_mb, "{:+.0f}"),
            page.cell(one_off, "{:+.2f}"), page.cell(_payback(result, r)), page.cell(r.numerics),
            page.cell(shown[9])]


def html(result: Result, root: Path) -> list[str]:
    found = tries.rows(result)
    body = [f'<p class="headline" id="headline">{page.inline(advice.recommendation(result))}</p>',
            *[f'<p class="note">{page.inline(n)}</p>' for n in _notes(result)],
            "<h2>The fixes, measured</h2>",
            page.table(HTML_COLUMNS, [_html_row(result, r) for r in found])]
    rows = intervals(result)
    if rows:
        body.append(svg.forest(rows, "speedup of each fix over the baseline, 95% interval"))
    series = _per_process(result)
    if sum(len(v) for v in series.values()) > 1:
        body += ["<h2>Each process's median step</h2>", svg.timeline(series, "median step per process (ms)")]
    if result.spec.skipped:
        items = [f"<li>{escape(s)}</li>" for s in result.spec.skipped]
        body += ["<h2>Not tried</h2>", "<ul>", *items, "</ul>"]
    return body
