"""The sentences a report states, each backed by an interval (and silent where none can be).

A ranking is a claim: two variants are ranked only when the 95% interval of their ratio
excludes 1 and the paired rounds held what the interval assumes; otherwise the sentence says
"no measurable difference" or "not measurable on this run". A profiler cannot make a step
faster: an overhead below 1 is reported as a biased measurement, never as a finding.
"""

from __future__ import annotations

from bench.measure import derive
from bench.measure.result import Result
from bench.measure.stats import Ratio, Verdict


def names(items: list[str]) -> str:
    quoted = [f"`{n}`" for n in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def speedup_text(r: Ratio) -> str:
    return f"{r.value:.2f}x ({r.ci()})"


def overhead_text(r: Ratio) -> str:
    if not r.measurable:
        return r.ci()
    if r.verdict == Verdict.FASTER:
        return (f"biased measurement: {r.value:.2f}x ({r.ci()}) -- a profiler cannot make a step faster; "
                "the plain rounds were slowed by something else (the machine's load changed between "
                "them, or the profiled rounds found warmer caches)")
    if r.verdict == Verdict.UNCHANGED:
        return f"no overhead beyond 5% ({r.ci()})"
    if r.verdict == Verdict.NOISY and not r.has_interval:
        return f"{r.value:.2f}x: not measured on this run -- too few pairs for an interval"
    if r.verdict == Verdict.NOISY:
        return f"{r.value:.2f}x ({r.ci()}): not measured to 5% on this run -- {WIDE}"
    return f"{r.value:.2f}x ({r.ci()})"


WIDE = "the interval holds 1 and reaches beyond +-5%"


def fastest(result: Result) -> str:
    measured = result.measured
    if not measured:
        return "No variant was measured."
    base = measured[0]
    if len(measured) == 1:
        return f"`{base}`: {derive.step_seconds(result, base) * 1e3:.2f} ms per step."
    best, tied = derive.fastest_group(result)
    verdicts = {n: derive.speedup(result, best, n) for n in tied}
    # in the order asked: stable
    same = [n for n in measured if n in tied and verdicts[n].verdict == Verdict.UNCHANGED]
    unknown = [n for n in measured if n in tied and verdicts[n].verdict == Verdict.NOISY]
    best_ms = f"{derive.step_seconds(result, best) * 1e3:.2f} ms per step"
    unranked = ""
    if unknown:
        why = verdicts[unknown[0]].caveat or WIDE if verdicts[unknown[0]].has_interval else "too few rounds"
        unranked = (f" {names(unknown)} could not be ranked against `{best}`: not measurable on this "
                    f"run ({why}).")
    if base == best and not same:
        if not unknown:
            return f"Fastest: `{base}` ({best_ms}); every other variant is measurably slower."
        return f"`{base}` has the lowest median step ({best_ms}).{unranked}"
    if base in unknown:
        return f"`{best}` has the lowest median step ({best_ms}).{unranked}"
    if base == best or base in same:
        others = [n for n in [best, *same] if n != base]
        verb = "shows" if len(others) == 1 else "show"
        return (f"No variant is measurably faster than `{base}` ({names(others)} {verb} no measurable "
                f"difference from it).{unranked}")
    group = [n for n in measured if n == best or n in same]
    ups = {n: derive.speedup(result, n, base) for n in group}
    if len(group) == 1:
        return f"Fastest: `{best}`, {best_ms}, {speedup_text(ups[best])} faster than `{base}`.{unranked}"
    values = [u.value for u in ups.values()]
    low, high = min(values), max(values)
    span = f"{low:.2f}x" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}x"
    return (f"Fastest: {names(group)}, with no measurable difference among them (the 95% interval "
            f"of each one's ratio to `{best}` holds 1); they step {span} faster than "
            f"`{base}` (intervals in the table).{unranked}")


def largest_part(result: Result) -> str:
    base = result.baseline
    if base is None:
        return ""
    shares = derive.shares(result, base)
    if not shares:
        return ""
    if not derive.labelled(shares):
        data = shares.get("data", 0.0)
        return (f"`{base}`: no parts labelled in its step (fetching its batch takes {data:.0%}); "
                "label them with `part(...)` to see the breakdown.")
    top = max(shares, key=lambda p: shares[p])
    return (f"`{base}` spends {shares[top]:.0%} of its step in `{top}`, its largest part"
            + (f" (`data`: {shares['data']:.0%})." if top != "data" and "data" in shares else "."))


def efficiency(result: Result) -> str:
    """One sentence per variant with a compute-only bound."""
    said = []
    for name, eff in derive.efficiencies(result).items():
        text = f"`{name}` runs at {eff.text()} times its compute-only bound"
        if not eff.measurable:
            said.append(f"`{name}`'s ratio to its compute-only bound is {eff.ci()}.")
        elif eff.verdict == Verdict.NOISY:
            said.append(text + f": not measurable ({WIDE}).")
        elif eff.verdict == Verdict.UNCHANGED:
            said.append(text + ": no measurable data cost is left.")
        elif eff.verdict == Verdict.FASTER:
            said.append(text + ": below its bound, which a step cannot be -- a biased measurement "
                        "(the machine's speed changed between them).")
        else:
            said.append(text + f": its data still costs {eff.value - 1:.0%} of a step.")
    if not said:
        return ""
    return " ".join(said) + (" (The bound is the same step on one batch that never changes; "
                             "1.00 = the data costs nothing.)")


def noise(result: Result) -> list[str]:
    """How noisy the run was, and a warning when that is too much for the claims made."""
    if not result.measured:
        return ["Noise: no variant measured."]
    spread = derive.noise(result)
    first = result[result.measured[0]].samples
    steps = len(first[0].steps) if first else 0
    text = (f"Noise: one variant's samples (rounds of {steps} step{'s' if steps != 1 else ''}) spread "
            f"by {spread:.1%} (IQR/median, median over variants; {len(result.orders) or len(first)} "
            "interleaved rounds)")
    width = derive.resolution(result)
    if width == width:  # not NaN
        against = "neighbouring variants" if result.ordered else "each variant and the baseline"
        text += (f"; paired, the intervals of the ratios between {against} are about "
                 f"±{width:.1%} wide, so smaller differences are not resolved")
    lines = [text + ". Rankings and ratios come from 95% bootstrap intervals over paired rounds, "
             "each checked for trends and order effects first."]
    if width > derive.RESOLUTION:
        lines.append(f"**Warning: the machine was noisy**: differences under {width:.0%} cannot be told "
                     "apart in this run. Re-run with more `--rounds`, or on a quieter machine.")
    return lines


def footprint(result: Result) -> str:
    """The fastest variant's throughput, MFU and peak memory, where they were measured."""
    if not result.measured:
        return ""
    best = min(result.measured, key=lambda n: derive.step_seconds(result, n))
    rate, mfu, peak = derive.throughput(result, best), derive.mfu(result, best), derive.peak_mb(result, best)
    unit = derive.samples_per_batch(result, best)[1]
    said = []
    if rate is not None:
        said.append(f"{rate.value:,.0f} {unit}/s" + (f" (95% CI {rate.low:,.0f}-{rate.high:,.0f})"
                                                     if rate.has_interval else ""))
    if derive.mfu_refused(result, best):
        said.append(derive.mfu_refused(result, best))
    elif mfu is not None:
        kind = "datasheet" if "datasheet" in result.peak.get("source", "") else "measured matmul"
        said.append(f"MFU {mfu:.1%} of {result.peak['flops'] / 1e9:,.0f} GFLOP/s ({kind} peak)")
    if peak is not None:
        said.append(f"a step's peak memory {peak:,.1f} MB")
    return f"`{best}`: {', '.join(said)}." if said else ""


def headline(result: Result) -> str:
    return " ".join(s for s in (fastest(result), footprint(result), largest_part(result), efficiency(result))
                    if s)
