"""``python -m bench compare BASELINE.json CANDIDATE.json``: the regression table.

Two verdicts per change: the timings' (``slower``/``faster``/``unchanged``/``noisy``, a
statistical test) and, where both files hold instruction counts (``bench cost``), the
counts' (``more work``/``less work``/``same work``, exact).

Exit status: 0 no regression, 1 at least one benchmark ``slower`` or ``more work``, 2 bad
input (a missing or damaged file, a NaN, zero or negative time, no benchmark in common), 3 no
regression but some benchmark ``noisy``: no verdict, which must not read as a pass.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pandas as pd

from bench.regress.benchjson import Loaded, ResultsError, load_file
from bench.regress.counts import DEFAULT_COUNT_THRESHOLD, CountComparison, compare_counts, count_lines
from bench.regress.rule import Comparison, Rule, compare, min_samples_for


@dataclass
class Judged:
    """Everything one comparison found: timings and counts, and what only one side had."""

    timings: list[Comparison]
    counts: list[CountComparison] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)
    only_cand: list[str] = field(default_factory=list)
    count_threshold: float = DEFAULT_COUNT_THRESHOLD
    notes: list[str] = field(default_factory=list)


def table(results: list[Comparison]) -> pd.DataFrame:
    rows = []
    for r in results:
        changes = ", ".join(f"{k.removesuffix('_per_step')} {a:g}->{b:g}"
                            for k, (a, b) in r.counters.items())
        rows.append({
            "benchmark": r.name, "base_ms": r.base_median * 1e3, "cand_ms": r.cand_median * 1e3,
            "ratio": f"{r.ratio:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]",
            "p_slower (Holm)": f"{r.p_slower:.3g}", "n": f"{r.n_base}/{r.n_cand}",
            "verdict": r.verdict.upper() if r.verdict == "slower" else r.verdict,
            "counters changed": changes or "-",
        })
    return pd.DataFrame(rows)


def render(judged: Judged, rule: Rule, markdown: bool) -> str:
    results = judged.timings
    slower = [r.name for r in results if r.verdict == "slower"]
    more = [c.name for c in judged.counts if c.verdict == "more work"]
    noisy = [r.name for r in results if r.verdict == "noisy"]
    family = results[0].family if results else 0
    if slower or more:
        parts = ([f"{len(slower)} benchmark(s) slower: {', '.join(slower)}"] if slower else []) + \
                ([f"more work (instructions) in {', '.join(more)}"] if more else [])
        head = "REGRESSION: " + "; ".join(parts)
    elif noisy:
        need = min_samples_for(rule.alpha, family)
        head = (f"NO VERDICT: {len(noisy)} benchmark(s) too noisy to judge: {', '.join(noisy)}. "
                f"Get one with more --rounds (a family of {family} benchmarks needs at least {need} "
                "samples a side to reach alpha after Holm), a quieter machine, or the instruction "
                "counts (python -m bench cost).")
    else:
        head = "No regression."
    lines = [("## " if markdown else "") + head]
    if results:
        frame = table(results)
        body = (frame.to_markdown(index=False, floatfmt=".3f") if markdown
                else frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        lines += ["", f"Rule: slower = median ratio > {1 + rule.threshold:.2f} and one-sided "
                  f"Mann-Whitney U p < {rule.alpha} (Holm-adjusted over the {family} benchmarks "
                  "compared, so the chance of any false alarm stays below alpha) and the ratio's "
                  f"95% bootstrap interval above 1 (above {1 + rule.threshold:.2f} when IQR/median > "
                  f"{rule.max_spread}); ratio = candidate / baseline.", "", body]
    if judged.counts:
        lines += ["", *count_lines(judged.counts, judged.count_threshold, markdown)]
    for note in judged.notes:
        lines += ["", note]
    for label, names in (("only in the baseline", judged.only_base),
                         ("only in the candidate", judged.only_cand)):
        if names:
            lines += ["", f"Benchmarks {label}: {', '.join(names)}"]
    return "\n".join(lines) + "\n"


def run_compare(args: argparse.Namespace) -> int:
    from bench.errors import UsageError

    if args.markdown is not None and not args.markdown.parent.is_dir():
        raise UsageError(f"--markdown {args.markdown}: folder {args.markdown.parent} does not exist; "
                         "create it or name a file in an existing folder")
    try:
        rule = Rule(args.threshold, args.alpha, args.min_samples, args.max_spread)
        base = load_file(args.baseline)
        cand = load_file(args.candidate)
        judged = checked_compare(base, cand, rule, args.baseline, args.candidate, args.count_threshold)
    except (ResultsError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(render(judged, rule, markdown=False))
    if args.markdown:
        try:
            args.markdown.write_text(render(judged, rule, markdown=True))
        except OSError as exc:
            raise UsageError(f"cannot write --markdown {args.markdown} ({exc.strerror or exc})") from None
    return exit_code(judged)


def checked_compare(base: Loaded, cand: Loaded, rule: Rule, base_name: object, cand_name: object,
                    count_threshold: float = DEFAULT_COUNT_THRESHOLD) -> Judged:
    """Timings and counts compared; refuses two files with nothing in common (nothing was compared)."""
    from bench.errors import UsageError

    results, only_base, only_cand = compare(base.benchmarks, cand.benchmarks, rule)
    counts: list[CountComparison] = []
    notes = []
    if base.counts and cand.counts:
        counts, count_only_base, count_only_cand = compare_counts(base.counts, cand.counts,
                                                                  count_threshold)
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
    return Judged(results, counts, only_base, only_cand, count_threshold, notes)


REGRESSION, NOISY = 1, 3


def exit_code(judged: Judged) -> int:
    """1 on a regression (slower, or more work); 3 when any benchmark is `noisy` (no verdict is
    not a pass); else 0."""
    if any(r.verdict == "slower" for r in judged.timings) or \
            any(c.verdict == "more work" for c in judged.counts):
        return REGRESSION
    return NOISY if any(r.verdict == "noisy" for r in judged.timings) else 0
