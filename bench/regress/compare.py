"""``python -m bench compare BASELINE.json CANDIDATE.json``: the regression table.

Each benchmark gets two signals, each a :class:`~bench.measure.stats.Verdict` -- the timings'
(``slower``/``faster``/``unchanged``/``noisy``, a statistical test) and, where both files hold
instruction counts (``bench instructions``), the counts' (``slower``/``faster``/``unchanged``,
exact) -- and one verdict from both (:func:`finals`): ``slower`` when either says so;
``unchanged`` when the timing says so, or when the timing is too noisy and the counts say the
work is the same (exact counts have no noise: the one signal a busy runner cannot blur);
``noisy`` only where the timing is noisy and no count resolves it.

Exit status: 0 no regression, 1 at least one benchmark ``slower``, 2 bad
input (a missing or damaged file, a NaN, zero or negative time, no benchmark in common), 3 no
regression but some benchmark ``noisy`` that no count resolved: no verdict, which must not
read as a pass. ``timing_only`` ignores the counts (today's rule for users without Valgrind).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from bench.instructions.compare import (
    DEFAULT_INSTRUCTIONS_THRESHOLD,
    InstructionComparison,
    compare_instructions,
    instruction_lines,
)
from bench.measure.rule import Comparison, Rule, evidence, gate_word, holm, min_samples_for, verdict_of
from bench.measure.stats import Verdict
from bench.regress.benchjson import BenchFileError, Benchmark, Loaded, load_file


@dataclass
class Judged:
    """Everything one comparison found: timings and counts, and what only one side had."""

    timings: list[Comparison]
    counts: list[InstructionComparison] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)
    only_cand: list[str] = field(default_factory=list)
    instructions_threshold: float = DEFAULT_INSTRUCTIONS_THRESHOLD
    notes: list[str] = field(default_factory=list)
    timing_only: bool = False  # the counts do not take part in the verdict


def count_key(benchmark: str) -> str:
    """The counts' name of a timed benchmark: ``test_step[naive]`` -> ``step[naive]``."""
    return benchmark.removeprefix("test_")


def finals(judged: Judged) -> list[Comparison]:
    """One verdict per benchmark from both signals (see the module docstring for the rule): each
    timing's Comparison with its counts and ``final`` set, then the benchmarks only counted."""
    counts = {} if judged.timing_only else {c.name: c for c in judged.counts}
    out: list[Comparison] = []
    for r in judged.timings:
        c = counts.pop(count_key(r.name), None)
        more = c is not None and c.verdict == Verdict.SLOWER
        ratio = f"ratio {r.ratio:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]"
        if r.verdict == Verdict.SLOWER:
            final, how = Verdict.SLOWER, "by timing and instruction count" if more else ""
        elif more:
            final, how = Verdict.SLOWER, f"by instruction count; timing {r.verdict}: {ratio}"
        elif r.verdict == Verdict.NOISY and c is not None:
            final, how = c.verdict, f"by instruction count; timing too noisy: {ratio}"
        else:
            final, how = Verdict(r.verdict), ""
        out.append(replace(r, instructions=c, final=final, how=how))
    nan = float("nan")
    for c in counts.values():  # counted, not timed
        out.append(Comparison(c.name, nan, nan, nan, (nan, nan), nan, Verdict.NOISY, 0, 0,
                              instructions=c, final=c.verdict, how="by instruction count"))
    return out


def table(results: list[Comparison]) -> pd.DataFrame:
    rows = []
    for r in results:
        changes = ", ".join(f"{k.removesuffix('_per_step')} {a:g}->{b:g}"
                            for k, (a, b) in r.counters.items())
        rows.append({
            "benchmark": r.name, "base_ms": r.base_median * 1e3, "cand_ms": r.cand_median * 1e3,
            "ratio": f"{r.ratio:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]",
            "p_slower (Holm)": f"{r.p_slower:.3g}", "n": f"{r.n_base}/{r.n_cand}",
            "verdict": gate_word(replace(r, final=None, how="")),
            "counters changed": changes or "-",
        })
    return pd.DataFrame(rows)


RULE = ("Verdict per benchmark, from both signals: `slower` (a regression) when the timing or the "
        "instruction counts say so; `unchanged` when the timing says so, or when the timing is too "
        "noisy and the counts are unchanged (a pass whose interval reaches beyond the threshold "
        "reads `no regression detected`: nothing says the change did nothing); `noisy` (no "
        "verdict) only where the timing is noisy and there are no counts to resolve it.")


def verdict_table(found: list[Comparison]) -> pd.DataFrame:
    return pd.DataFrame([{
        "benchmark": f.name, "timing": str(f.verdict) if f.timed else "-",
        "instructions": str(f.instructions.verdict) if f.instructions else "-",
        "verdict": gate_word(f), "how": f.how or "by timing",
    } for f in found])


def headline(judged: Judged, rule: Rule) -> str:
    found = finals(judged)
    regressions = [f for f in found if f.regression]
    noisy = [f.name for f in found if f.unresolved]
    family = judged.timings[0].family if judged.timings else 0
    if regressions:
        return "REGRESSION: " + "; ".join(f"{f.name} {f.final}" + (f" ({f.how})" if f.how else "")
                                          for f in regressions)
    if noisy:
        need = min_samples_for(rule.alpha, family)
        return (f"NO VERDICT: {len(noisy)} benchmark(s) too noisy to judge and without instruction "
                f"counts: {', '.join(noisy)}. Get one with the counts (valgrind; drop --timing-only), "
                f"more samples (`regress --processes`; a family of {family} benchmarks needs at "
                f"least {need} samples a "
                "side to reach alpha after Holm), or a quieter machine.")
    resolved = [f for f in found if f.how.startswith("by instruction count; timing too noisy")]
    return "No regression." + (f" ({len(resolved)} benchmark(s) judged by instruction count: their "
                               "timing was too noisy.)" if resolved else "")


def render(judged: Judged, rule: Rule, markdown: bool) -> str:
    results = judged.timings
    family = results[0].family if results else 0
    lines = [("## " if markdown else "") + headline(judged, rule)]
    found = finals(judged)
    if found:
        frame = verdict_table(found)
        lines += ["", RULE if not judged.timing_only else
                  "Verdict per benchmark by its timing alone (--timing-only: the instruction counts "
                  "are not used).", "",
                  frame.to_markdown(index=False) if markdown else frame.to_string(index=False)]
    if results:
        frame = table(results)
        body = (frame.to_markdown(index=False, floatfmt=".3f") if markdown
                else frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        lines += ["", ("### " if markdown else "") + "Timings", "",
                  f"Rule: slower = median ratio > {1 + rule.threshold:.2f} and one-sided "
                  f"Mann-Whitney U p < {rule.alpha} (Holm-adjusted over the {family} benchmarks "
                  "compared, so the chance of any false alarm stays below alpha) and the ratio's "
                  f"95% bootstrap interval above 1 (above {1 + rule.threshold:.2f} when IQR/median > "
                  f"{rule.max_spread}); ratio = candidate / baseline.", "", body]
    if judged.counts:
        lines += ["", *instruction_lines(judged.counts, judged.instructions_threshold, markdown)]
    for note in judged.notes:
        lines += ["", note]
    for label, names in (("only in the baseline", judged.only_base),
                         ("only in the candidate", judged.only_cand)):
        if names:
            lines += ["", f"Benchmarks {label}: {', '.join(names)}"]
    return "\n".join(lines) + "\n"


def verdict_doc(judged: Judged, rule: Rule) -> dict[str, object]:
    """What a CI job acts on: the exit code, the headline, and per benchmark the timing verdict,
    the count verdict and the final one (verdict.json)."""
    def nan_free(x: float) -> float | None:
        return None if x != x else x

    return {
        "exit_code": exit_code(judged), "headline": headline(judged, rule),
        "rule": "timing only" if judged.timing_only else RULE,
        "benchmarks": [{
            "name": f.name, "verdict": f.final, "regression": f.regression, "how": f.how or "by timing",
            "timing": None if not f.timed else {
                "verdict": f.verdict, "ratio": nan_free(f.ratio),
                "ci": [nan_free(f.ci[0]), nan_free(f.ci[1])],
                "p_slower_holm": nan_free(f.p_slower)},
            "instructions": None if f.instructions is None else {
                "verdict": f.instructions.verdict, "base": f.instructions.base,
                "candidate": f.instructions.cand, "ratio": f.instructions.ratio},
        } for f in finals(judged)],
    }


@dataclass(frozen=True)
class CompareSpec:
    """What a ``compare`` asks for (built by ``bench.commands.compare``)."""

    baseline: Path
    candidate: Path
    threshold: float = Rule.threshold
    alpha: float = Rule.alpha
    min_samples: int = Rule.min_samples
    max_spread: float = Rule.max_spread
    instructions_threshold: float = DEFAULT_INSTRUCTIONS_THRESHOLD
    timing_only: bool = False
    markdown: Path | None = None  # also write the table here


def run_compare(spec: CompareSpec) -> int:
    from bench.errors import UsageError

    if spec.markdown is not None and not spec.markdown.parent.is_dir():
        raise UsageError(f"--markdown {spec.markdown}: folder {spec.markdown.parent} does not exist; "
                         "create it or name a file in an existing folder")
    try:
        rule = Rule(spec.threshold, spec.alpha, spec.min_samples, spec.max_spread)
        base = load_file(spec.baseline)
        cand = load_file(spec.candidate)
        judged = checked_compare(base, cand, rule, spec.baseline, spec.candidate, spec.instructions_threshold,
                                 timing_only=spec.timing_only)
    except (BenchFileError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(render(judged, rule, markdown=False))
    if spec.markdown:
        try:
            spec.markdown.write_text(render(judged, rule, markdown=True))
        except OSError as exc:
            raise UsageError(f"cannot write --markdown {spec.markdown} ({exc.strerror or exc})") from None
    return exit_code(judged)


def checked_compare(base: Loaded, cand: Loaded, rule: Rule, base_name: object, cand_name: object,
                    instructions_threshold: float = DEFAULT_INSTRUCTIONS_THRESHOLD,
                    timing_only: bool = False) -> Judged:
    """Timings and counts compared; refuses two files with nothing in common (nothing was compared)."""
    from bench.errors import UsageError

    results, only_base, only_cand = compare_benchmarks(base.benchmarks, cand.benchmarks, rule)
    counts: list[InstructionComparison] = []
    notes = []
    if base.counts and cand.counts:
        counts, count_only_base, count_only_cand = compare_instructions(base.counts, cand.counts,
                                                                        instructions_threshold)
        only_base += count_only_base
        only_cand += count_only_cand
    elif base.counts or cand.counts:
        which = cand_name if base.counts else base_name
        notes.append(f"Instruction counts: only one side has them ({which} has none), so they were "
                     "not compared.")
    if not results and not counts:
        raise UsageError(f"{base_name} and {cand_name} have no benchmark in common (baseline: "
                         f"{', '.join(only_base[:3])}...; candidate: {', '.join(only_cand[:3])}...): "
                         "compare runs of the same suites")
    if timing_only and counts:
        notes.append("--timing-only: the instruction counts are shown but not used in the verdict.")
    return Judged(results, counts, only_base, only_cand, instructions_threshold, notes, timing_only)


REGRESSION, NOISY = 1, 3


def exit_code(judged: Judged) -> int:
    """1 on a regression (slower by timing or by instruction count); 3 when a benchmark is
    `noisy` and no count resolved it (no verdict is not a pass); else 0."""
    found = finals(judged)
    if any(f.regression for f in found):
        return REGRESSION
    return NOISY if any(f.unresolved for f in found) else 0


def _counter_changes(base: Benchmark, cand: Benchmark) -> dict[str, tuple[float, float]]:
    keys = sorted(k for k in set(base.extra_info) & set(cand.extra_info) if k.endswith("_per_step"))
    return {k: (base.extra_info[k], cand.extra_info[k]) for k in keys
            if base.extra_info[k] != cand.extra_info[k]}


def compare_benchmarks(base: list[Benchmark], cand: list[Benchmark], rule: Rule | None = None
                       ) -> tuple[list[Comparison], list[str], list[str]]:
    """Compare benchmarks by name -> (comparisons, only in base, only in candidate).

    The benchmarks in both files are one family: their U-test p-values are Holm-adjusted
    (separately for `slower` and for `faster`), so the chance of any false alarm among them
    stays at most ``alpha``, however many benchmarks there are.
    """
    rule = rule or Rule()
    b_by, c_by = {b.name: b for b in base}, {c.name: c for c in cand}
    names = [n for n in b_by if n in c_by]
    found = [evidence(b_by[n].data, c_by[n].data, rule, family=len(names), name=n) for n in names]
    slow_adj = holm([e.p_slower for e in found])
    fast_adj = holm([e.p_faster for e in found])
    results = []
    for name, ev, ps, pf in zip(names, found, slow_adj, fast_adj, strict=True):
        adjusted = replace(ev, p_slower=ps, p_faster=pf, counters=_counter_changes(b_by[name], c_by[name]),
                           base_median=b_by[name].median, cand_median=c_by[name].median)
        results.append(replace(adjusted, verdict=verdict_of(adjusted, rule)))
    only_base = [n for n in b_by if n not in c_by]
    only_cand = [n for n in c_by if n not in b_by]
    return results, only_base, only_cand
