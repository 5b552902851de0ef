"""The one statement a ``try`` Result leads with -- what to apply, from the measurement that
supports it -- and ``run --compare``'s B against A; the renderers print them as they are."""

from __future__ import annotations

from bench.measure import tries
from bench.measure.result import Result
from bench.measure.tries import Row

COMPARED = {"faster": "B is measurably faster than A", "slower": "B is measurably slower than A",
            "unchanged": "A and B are the same within 5%",
            "not measurable": "not measurable: the interval holds 1 and reaches beyond 5%, or the processes' "
                              "medians spread too much (more --repeats, or a quieter machine)"}


def speedup_text(r: Row) -> str:
    s = r.speedup
    return f"{s[0]:.3f} ({s[1]:.3f}-{s[2]:.3f})" if s else "-"


def compared(result: Result) -> str:
    """``run --compare``'s statement: B / A with its interval and what it says."""
    b = next((r for r in tries.rows(result) if r.name == "B"), None)
    if b is None or not b.comparison:
        return f"B against A: {b.verdict if b else 'not measured'}."
    c = b.comparison
    per = {tries.PER_SAMPLE: " per sample (their batches differ: a step of more samples is not slower "
                             "for taking longer)",
           tries.PER_STEP_UNSEEN: " per step (the batch of a step was not seen on both sides: where they "
                                  "differ, compare their samples/s)"}.get(b.per, "")
    # the one-sided test's p in the direction the ratio points: B slower (above 1) or B faster
    tested = (f"p={c.p_faster:.3g} that B is faster" if c.ratio < 1 and c.p_faster == c.p_faster
              else f"p={c.p_slower:.3g} that B is slower")
    return (f"B / A = {c.ratio:.3f}{per} (95% CI {c.ci[0]:.3f}-{c.ci[1]:.3f}, one-sided Mann-Whitney "
            f"{tested}): {COMPARED[b.verdict]}.")


def recommendation(result: Result) -> str:
    """One statement, from the measurement that supports it: the combination where it ran; a
    fix whose numerics a stopped run never checked is not recommended, and a recommendation
    from a stopped run says so."""
    if result.spec.versus:
        return compared(result)
    found = tries.rows(result)
    together = next((r for r in found if r.name == tries.COMBINED), None)
    spec = result.spec
    if together is not None and together.speedup:
        if not together.recommended:
            return (f"Together {' + '.join(spec.combination)} measured {together.verdict} "
                    f"({speedup_text(together)}): no combined recommendation; the fixes alone are in the "
                    "table.")
        how = ("switched on and off together in the script's process" if together.duet
               else "measured against new baseline processes")
        return _apply(result, together, " + ".join(spec.combination), f"together {{}}, {how}")
    good = tries.choose(found)
    if len(good) == 1:
        only = "{}, the only fix measurably faster that kept the result"
        return _apply(result, good[0], good[0].name, only)
    if result.partial:
        faster = ", ".join(r.name for r in good)
        return ("No recommendation: the run stopped before it was complete" +
                (f" ({faster} measured faster alone; their combination was not measured)." if good else "."))
    return "No fix was measurably faster on this script and machine: none is recommended."


def _apply(result: Result, r: Row, name: str, said: str) -> str:
    s = r.speedup or (0.0, 0.0, 0.0)
    fast = said.format(f"{s[0]:.2f}x faster (95% CI {s[1]:.2f}-{s[2]:.2f})")
    if result.partial and not r.checked:
        return (f"Not yet a recommendation: {name} measured {fast.removeprefix('together ')}, but the run "
                "stopped before its numerics were checked; run it again to finish.")
    stopped = " (from a run stopped early: the fixes it did not reach are not in it)" \
        if result.partial else ""
    unchecked = "" if r.checked else f"; its numerics: {r.numerics}"
    return f"Apply {name}: {fast}{unchecked}{stopped}."


SAVES = 0.05  # a fix whose tensors' peak is this much lower than the baseline's saves memory


def memory_savers(result: Result) -> str:
    """The fixes that lower the tensors' peak by at least SAVES of the baseline's, and how to
    measure the batch each lets through ("" where none does)."""
    base = [m.footprint.breakdown.peak for m in tries.processes(result, tries.BASELINE, 1, None)
            if m.footprint.breakdown is not None]
    if not base or result.spec.versus:
        return ""
    peak = sorted(base)[len(base) // 2] / 2**20
    saving = [r for r in tries.rows(result) if r.tensors_mb.get("peak", 0.0) <= -SAVES * peak]
    if not saving:
        return ""
    names = ", ".join(f"`{r.name}` ({r.tensors_mb['peak']:+.1f} MB)" for r in saving)
    entries = ",".join(dict.fromkeys(e for r in saving if (e := _entry(result, r.name))))
    script = " ".join(result.spec.command)
    return (f"Lower the tensors' peak (the baseline's: {peak:,.1f} MB): {names}; the batch each lets "
            f"through: `vaebench run --fit --fixes {entries or '...'} {script}`.")


def _entry(result: Result, side: str) -> str:
    """The catalogue entry a side's fix came from (what --fixes names), from its processes' notes."""
    for m in result.measurements:
        found = m.notes.get("entry") if m.notes.get("side") == side else \
            m.notes.get("fixes", {}).get(side, {}).get("entry")
        if found:
            return str(found)
    return ""
