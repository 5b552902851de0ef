"""``python -m bench compare BASELINE.json CANDIDATE.json``: the regression table.

Exit status: 0 no regression, 1 at least one benchmark ``slower``, 2 bad input (a missing or
damaged file, a NaN, zero or negative time, no benchmark in common), 3 no regression but some
benchmark ``noisy``: no verdict, which must not read as a pass.
"""

from __future__ import annotations

import argparse

import pandas as pd

from bench.regress.benchjson import ResultsError, load
from bench.regress.rule import Comparison, Rule, compare, min_samples_for


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


def render(results, only_base, only_cand, rule: Rule, markdown: bool) -> str:
    frame = table(results)
    body = (frame.to_markdown(index=False, floatfmt=".3f") if markdown
            else frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    slower = [r.name for r in results if r.verdict == "slower"]
    noisy = [r.name for r in results if r.verdict == "noisy"]
    if slower:
        head = f"REGRESSION: {len(slower)} benchmark(s) slower: {', '.join(slower)}"
    elif noisy:
        family = results[0].family if results else 1
        need = min_samples_for(rule.alpha, family)
        head = (f"NO VERDICT: {len(noisy)} benchmark(s) too noisy to judge: {', '.join(noisy)}. "
                f"Get one with more --rounds (a family of {family} benchmarks needs at least {need} "
                "samples a side to reach alpha after Holm), a quieter machine, or the exact counters.")
    else:
        head = "No regression."
    lines = [("## " if markdown else "") + head, "",
             f"Rule: slower = median ratio > {1 + rule.threshold:.2f} and one-sided Mann-Whitney "
             f"U p < {rule.alpha} (Holm-adjusted over the {results[0].family if results else 0} "
             "benchmarks compared, so the chance of any false alarm stays below alpha) and the "
             f"ratio's 95% bootstrap interval above 1 (above {1 + rule.threshold:.2f} when "
             f"IQR/median > {rule.max_spread}); ratio = candidate / baseline.", "",
             body]
    for label, names in (("only in the baseline", only_base), ("only in the candidate", only_cand)):
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
        _, base = load(args.baseline)
        _, cand = load(args.candidate)
    except (ResultsError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    results, only_base, only_cand = checked_compare(base, cand, rule, args.baseline, args.candidate)
    print(render(results, only_base, only_cand, rule, markdown=False))
    if args.markdown:
        try:
            args.markdown.write_text(render(results, only_base, only_cand, rule, markdown=True))
        except OSError as exc:
            raise UsageError(f"cannot write --markdown {args.markdown} ({exc.strerror or exc})") from None
    return exit_code(results)


def checked_compare(base, cand, rule: Rule, base_name: object, cand_name: object):
    """:func:`compare`, refusing two files with no benchmark in common (nothing was compared)."""
    from bench.errors import UsageError

    results, only_base, only_cand = compare(base, cand, rule)
    if not results:
        raise UsageError(f"{base_name} and {cand_name} have no benchmark in common (baseline: "
                         f"{', '.join(only_base[:3])}...; candidate: {', '.join(only_cand[:3])}...): "
                         "compare runs of the same suites")
    return results, only_base, only_cand


REGRESSION, NOISY = 1, 3


def exit_code(results: list[Comparison]) -> int:
    """1 on a regression; 3 when any benchmark is `noisy` (no verdict is not a pass); else 0."""
    if any(r.verdict == "slower" for r in results):
        return REGRESSION
    return NOISY if any(r.verdict == "noisy" for r in results) else 0
