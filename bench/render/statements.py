"""The sentences a report states, each backed by an interval (and silent where none can be).

A ranking is a claim: two variants are ranked only when the 95% interval of their ratio
excludes 1; otherwise the sentence says "no measurable difference". A profiler overhead whose
interval holds 1 is "no measurable overhead".
"""

from __future__ import annotations

from bench.measure import derive
from bench.measure.result import Result
from bench.measure.stats import Ratio


def names(items: list[str]) -> str:
    quoted = [f"`{n}`" for n in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def speedup_text(r: Ratio) -> str:
    return f"{r.value:.2f}x ({r.ci()})"


def overhead_text(r: Ratio) -> str:
    if r.verdict == "same" and r.has_interval:
        return f"no measurable overhead ({r.ci()})"
    return f"{r.value:.2f}x ({r.ci()})"


def fastest(result: Result) -> str:
    measured = result.measured
    if not measured:
        return "No variant was measured."
    base = measured[0]
    if len(measured) == 1:
        return f"`{base}`: {derive.step_seconds(result, base) * 1e3:.2f} ms per step."
    best, tied = derive.fastest_group(result)
    group = [n for n in measured if n == best or n in tied]  # in the order asked: stable text
    if base in group:
        others = [n for n in group if n != base]
        verb = "shows" if len(others) == 1 else "show"
        return (f"No variant is measurably faster than `{base}` "
                + (f"({names(others)} {verb} no measurable difference from it)." if others else "."))
    ups = {n: derive.speedup(result, n, base) for n in group}
    if len(group) == 1:
        return (f"Fastest: `{best}`, {derive.step_seconds(result, best) * 1e3:.2f} ms per step, "
                f"{speedup_text(ups[best])} faster than `{base}`.")
    low, high = min(u.value for u in ups.values()), max(u.value for u in ups.values())
    span = f"{low:.2f}x" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}x"
    return (f"Fastest: {names(group)}, with no measurable difference among them (the 95% interval "
            f"of each one's ratio to `{best}` holds 1); they step {span} faster than "
            f"`{base}` (intervals in the table).")


def biggest_cost(result: Result) -> str:
    base = result.baseline
    if base is None:
        return ""
    shares = derive.shares(result, base)
    if not shares:
        return ""
    top = max(shares, key=lambda p: shares[p])
    return (f"`{base}` spends {shares[top]:.0%} of its step in `{top}`, its largest part"
            + (f" (`data`: {shares['data']:.0%})." if top != "data" and "data" in shares else "."))


def efficiency(result: Result) -> str:
    eff = derive.efficiency(result)
    if eff is None:
        return ""
    text = (f"`{result.bound_of}` runs at {eff.text()} times its compute-only bound (the same "
            "step on one batch that never changes; 1.00 = its data costs nothing)")
    if eff.verdict == "same":
        return text + ": no measurable data cost is left."
    return text + f": its data still costs {eff.value - 1:.0%} of a step."


def noise(result: Result) -> list[str]:
    """How noisy the run was, and a warning when that is too much for the claims made."""
    spread = derive.noise(result)
    first = next(iter(result.rounds.values()), [])
    steps = len(first[0].steps) if first else 0
    text = (f"Noise: one variant's samples (rounds of {steps} step{'s' if steps != 1 else ''}) spread "
            f"by {spread:.1%} (IQR/median, median over variants; {len(first)} interleaved rounds)")
    width = derive.resolution(result)
    if width == width:  # not NaN
        text += (f"; paired, the intervals of the ratios between neighbouring variants are about "
                 f"±{width:.1%} wide, so smaller differences are not resolved")
    lines = [text + ". Rankings and ratios come from 95% bootstrap intervals over paired rounds."]
    if width > derive.RESOLUTION:
        lines.append(f"**Warning: the machine was noisy**: differences under {width:.0%} cannot be told "
                     "apart in this run. Re-run with more `--rounds`, or on a quieter machine.")
    eff = derive.efficiency(result)
    if eff is not None and eff.low <= 1.05 < eff.high:
        lines.append("The efficiency interval straddles 1.05: this run cannot tell whether the data "
                     "path is within 5% of the bound.")
    return lines


def headline(result: Result) -> str:
    return " ".join(s for s in (fastest(result), biggest_cost(result), efficiency(result)) if s)
