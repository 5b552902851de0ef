"""``python -m bench compare BASELINE.json CANDIDATE.json``: the regression table.

Exit status: 0 no regression, 1 at least one benchmark ``slower``, 2 bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bench.compare import Comparison, Rule, compare
from bench.results import ResultsError, load


class CompareUsageError(Exception):
    pass


def add_compare_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "compare", help="compare two pytest-benchmark JSON files (raw rounds) for regressions",
        description="Per benchmark: medians, ratio with a 95%% bootstrap interval, one-sided "
                    "Mann-Whitney U p-value, verdict (slower/faster/unchanged/noisy) and any "
                    "change in the deterministic counters. Exit 1 on a regression.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("baseline", type=Path)
    p.add_argument("candidate", type=Path)
    p.add_argument("--threshold", type=float, default=0.05,
                   help="slowdown (fraction) a regression must exceed")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level of the U test")
    p.add_argument("--min-samples", type=int, default=5,
                   help="fewer samples per side than this -> noisy")
    p.add_argument("--max-spread", type=float, default=0.25,
                   help="IQR/median above this on either side: the 95%% interval must clear "
                        "1 + threshold, else noisy")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table here")


def table(results: list[Comparison]) -> pd.DataFrame:
    rows = []
    for r in results:
        changes = ", ".join(f"{k.removesuffix('_per_step')} {a:g}->{b:g}"
                            for k, (a, b) in r.counters.items())
        rows.append({
            "benchmark": r.name, "base_ms": r.base_median * 1e3, "cand_ms": r.cand_median * 1e3,
            "ratio": f"{r.ratio:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]",
            "p_slower": f"{r.p_slower:.3g}", "n": f"{r.n_base}/{r.n_cand}",
            "verdict": r.verdict.upper() if r.verdict == "slower" else r.verdict,
            "counters changed": changes or "-",
        })
    return pd.DataFrame(rows)


def render(results, only_base, only_cand, rule: Rule, markdown: bool) -> str:
    frame = table(results)
    body = (frame.to_markdown(index=False, floatfmt=".3f") if markdown
            else frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    slower = [r.name for r in results if r.verdict == "slower"]
    head = (f"REGRESSION: {len(slower)} benchmark(s) slower: {', '.join(slower)}" if slower
            else "No regression.")
    lines = [("## " if markdown else "") + head, "",
             f"Rule: slower = median ratio > {1 + rule.threshold:.2f} and one-sided Mann-Whitney "
             f"U p < {rule.alpha} and the ratio's 95% bootstrap interval above 1 (above "
             f"{1 + rule.threshold:.2f} when IQR/median > {rule.max_spread}); "
             "ratio = candidate / baseline.", "",
             body]
    for label, names in (("only in the baseline", only_base), ("only in the candidate", only_cand)):
        if names:
            lines += ["", f"Benchmarks {label}: {', '.join(names)}"]
    return "\n".join(lines) + "\n"


def run_compare(args: argparse.Namespace) -> int:
    from bench.cli import UsageError

    try:
        rule = Rule(args.threshold, args.alpha, args.min_samples, args.max_spread)
        _, base = load(args.baseline)
        _, cand = load(args.candidate)
    except (ResultsError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    results, only_base, only_cand = compare(base, cand, rule)
    print(render(results, only_base, only_cand, rule, markdown=False))
    if args.markdown:
        args.markdown.write_text(render(results, only_base, only_cand, rule, markdown=True))
    return 1 if any(r.verdict == "slower" for r in results) else 0
