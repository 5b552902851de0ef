"""The acceptance measurements of the regression rule: false alarms (A/A) and detection (A/B).

    python experiments/regress_experiments.py aa --runs 10            # base = candidate = HEAD
    python experiments/regress_experiments.py ab --copies 5,20,80 --runs 3
    python experiments/regress_experiments.py evaluate                # re-judge saved runs with today's rule

    python experiments/regress_experiments.py counts --runs 10        # instruction counts: how exact
    python experiments/regress_experiments.py count-ab --change copy --runs 10   # ... what they catch

Each run is one ``python -m bench regress`` (interleaved processes). For A/A the same
per-process files are also judged by pytest-benchmark's own rule,
``--benchmark-compare-fail=median:5%`` (fail when a run's median is > 5% above the previous
run's), applied to consecutive processes, so both rules see identical timings. The A/B
candidate loads ``experiments/slow_variant.py``, which makes the optimized fetch clone
each batch VB_EXTRA_COPIES more times. Results go to reports/experiments/*.json and stdout.

The count experiments run ``python -m bench instructions`` (two processes at a time: callgrind is
single-threaded). ``count-ab`` checks HEAD out twice into temporary worktrees and edits the
candidate's source (:data:`CHANGES`: the kind of change a pull request makes), so both sides
run real, committed-looking code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

from bench.regress.benchjson import load
from bench.regress.compare import compare_benchmarks as compare

OUT = Path("reports/experiments")


def _regress(out: Path, select: str, extra_env: dict[str, str], candidate_args: str,
             rounds: int = 7) -> int:
    """One `bench regress` in this process (the candidate's extra pytest arguments are not a user
    option: they are how a known change is injected without a commit)."""
    import contextlib
    import io

    from bench.cli import build_parser
    from bench.commands.regress import spec_from
    from bench.regress.worktree import run_regress

    args = build_parser().parse_args(["regress", "--base", "HEAD", "--processes", str(rounds),
                                      "--select", select, "--out", str(out)])
    saved = dict(os.environ)
    os.environ.update(extra_env)  # read by the benchmark processes (VB_EXTRA_COPIES, PYTHONPATH)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return run_regress(spec_from(args), candidate_extra=candidate_args.split())
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _verdicts(out: Path) -> list[dict]:
    _, base = load(out / "base.json")
    _, cand = load(out / "candidate.json")
    results, _, _ = compare(base, cand)
    return [{"name": r.name, "ratio": r.ratio, "ci": r.ci, "p": r.p_slower, "verdict": r.verdict,
             "counters": r.counters} for r in results]


def _pytest_benchmark_rule(out: Path, limit: float = 0.05) -> tuple[int, int]:
    """(fails, comparisons) of median:5% between consecutive processes (time order)."""
    order = []
    for i in range(len(list(out.glob("base-*.json")))):
        order += [f"base-{i}.json", f"candidate-{i}.json"] if i % 2 == 0 else \
                 [f"candidate-{i}.json", f"base-{i}.json"]
    runs = [{b.name: b.median for b in load(out / name)[1]} for name in order]
    fails = total = 0
    for prev, cur in pairwise(runs):
        for name in cur.keys() & prev.keys():
            total += 1
            fails += cur[name] > prev[name] * (1 + limit)
    return fails, total


def aa(runs: int, select: str) -> dict:
    rows, pb_fails, pb_total = [], 0, 0
    for i in range(runs):
        out = OUT / f"aa-{i}"
        _regress(out, select, {}, "")
        verdicts = _verdicts(out)
        fails, total = _pytest_benchmark_rule(out)
        pb_fails, pb_total = pb_fails + fails, pb_total + total
        slower = [v["name"] for v in verdicts if v["verdict"] == "slower"]
        rows.append({"run": i, "slower": slower, "verdicts": verdicts,
                     "pytest_benchmark_median5_fails": fails, "pytest_benchmark_comparisons": total})
        print(f"A/A run {i}: our rule slower={len(slower)}/{len(verdicts)}; "
              f"pytest-benchmark median:5% fails={fails}/{total}", flush=True)
    summary = {"runs": runs, "comparisons": sum(len(r["verdicts"]) for r in rows),
               "our_slower": sum(len(r["slower"]) for r in rows),
               "pytest_benchmark_fails": pb_fails, "pytest_benchmark_comparisons": pb_total,
               "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    return summary


def ab(copies: list[int], runs: int, select: str, rounds: int = 7) -> dict:
    here = str(Path(__file__).resolve().parent)  # slow_variant.py
    rows = []
    for n in copies:
        for i in range(runs):
            out = OUT / (f"ab-{n}-{i}" if rounds == 7 else f"ab-{n}-{i}-r{rounds}")
            env = {"VB_EXTRA_COPIES": str(n),
                   "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
            _regress(out, select, env, "-p slow_variant", rounds)
            for v in _verdicts(out):
                rows.append({"copies": n, "run": i, **v})
                print(f"A/B copies={n} run {i}: {v['name']} ratio {v['ratio']:.3f} "
                      f"[{v['ci'][0]:.3f}, {v['ci'][1]:.3f}] p={v['p']:.3g} -> {v['verdict']} "
                      f"{v['counters']}", flush=True)
    return {"rows": rows}


def evaluate() -> dict:
    """Re-judge every saved aa-*/ab-* run with the current rule: one table, no new timing."""
    from collections import Counter

    aa_counts: Counter[str] = Counter()
    ab_rows = []
    for out in sorted(OUT.glob("aa-*")):
        if (out / "candidate.json").exists():
            aa_counts.update(v["verdict"] for v in _verdicts(out))

    def order(d: Path) -> list[int]:
        return [int(x.lstrip("r")) for x in d.name.split("-")[1:]]

    for out in sorted(OUT.glob("ab-*-*"), key=order):
        if not (out / "candidate.json").exists():
            continue
        copies = int(out.name.split("-")[1])
        ab_rows += [{"copies": copies, "run": out.name, **v} for v in _verdicts(out)]
    print(f"A/A: {sum(aa_counts.values())} comparisons -> {dict(aa_counts)}")
    for row in ab_rows:
        lo, hi = row["ci"]
        print(f"A/B {row['run']:>9} {row['name']:<28} ratio {row['ratio']:6.2f} [{lo:5.2f}, {hi:5.2f}]"
              f" p={row['p']:.3g} -> {row['verdict']}")
    return {"aa": dict(aa_counts), "ab": ab_rows}


# name -> (file, text, replacement): small changes of the work a fetch or a step does
CHANGES: dict[str, tuple[str, str, str]] = {
    # one extra copy of every batch in the resident fetch (resident and resident+fused)
    "copy": ("vae/pipelines.py",
             "yield self.data.index_select(0, order[start:start + self.batch_size])  # (batch, 784)",
             "yield self.data.index_select(0, order[start:start + self.batch_size]).clone()"),
    # a metric computed in every step for a log line and never used (every variant): the
    # reconstruction loss of the first 40 samples of the batch, about 2% of the step
    "metric": ("vae/speedups.py",
               "    return vae_loss(x_hat, batch, mean, log_var)\n",
               "    with torch.no_grad():\n"
               "        torch.nn.functional.binary_cross_entropy(x_hat[:40], batch[:40], reduction='sum')\n"
               "    return vae_loss(x_hat, batch, mean, log_var)\n"),
}


def _instructions_pair(roots: list[Path], outs: list[Path], variants: str) -> None:
    """``bench instructions`` in each root at once (one per core)."""
    procs = []
    for root, out in zip(roots, outs, strict=True):
        env = {**os.environ, "PYTHONPATH": str(root)}
        cmd = [sys.executable, "-m", "bench", "instructions", "--no-progress", "--json", str(out.resolve()),
               "--data-dir", str(Path("data").resolve()), "--variants", variants]
        procs.append(subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"bench instructions failed: {err[-500:]}")


def _counts_of(path: Path) -> dict:
    return json.loads(path.read_text())["instructions"]["counts"]


def counts(runs: int, variants: str) -> dict:
    """The same code counted ``runs`` times in separate processes: how far the counts move."""
    paths = [OUT / f"counts-{i}.json" for i in range(runs)]
    root = Path.cwd()
    for i in range(0, runs, 2):
        pair = paths[i:i + 2]
        _instructions_pair([root] * len(pair), pair, variants)
        print(f"counted runs {i + 1}-{i + len(pair)} of {runs}", flush=True)
    per_key: dict[str, list[float]] = {}
    for path in paths:
        for key, entry in _counts_of(path).items():
            per_key.setdefault(key, []).append(entry["instructions"])
    rows = {key: {"min": min(v), "max": max(v), "spread_pct": 100 * (max(v) - min(v)) / min(v)}
            for key, v in per_key.items()}
    for key, row in rows.items():
        print(f"{key:<24} {row['min']:>14,.0f} .. {row['max']:>14,.0f}  spread {row['spread_pct']:.4f}%")
    return {"runs": runs, "rows": rows}


def count_ab(change: str, runs: int, variants: str, threshold: float = 0.01) -> dict:
    """Base = HEAD, candidate = HEAD with one of :data:`CHANGES`; counted ``runs`` times."""
    import tempfile

    from bench.instructions.compare import compare_instructions

    file, old, new = CHANGES[change]
    rows = []
    with tempfile.TemporaryDirectory(prefix="vaebench-ab-") as tmp:
        roots = [Path(tmp) / "a", Path(tmp) / "b"]  # equal lengths: counts depend on the layout
        for root in roots:
            subprocess.run(["git", "worktree", "add", "--detach", "--force", str(root), "HEAD"],
                           check=True, capture_output=True)
        try:
            source = (roots[1] / file).read_text()
            if source.count(old) != 1:
                raise SystemExit(f"change {change!r}: the text to replace is not in {file} once")
            (roots[1] / file).write_text(source.replace(old, new))
            for i in range(runs):
                outs = [OUT / f"count-ab-{change}-{i}-{side}.json" for side in ("a", "b")]  # a = base
                _instructions_pair(roots, outs, variants)
                results, _, _ = compare_instructions(_counts_of(outs[0]), _counts_of(outs[1]), threshold)
                for r in results:
                    rows.append({"run": i, "name": r.name, "base": r.base, "cand": r.cand,
                                 "change_pct": 100 * (r.ratio - 1), "verdict": r.verdict,
                                 "moved": r.moved})
                    if r.verdict != "unchanged":
                        print(f"{change} run {i}: {r.name} {r.base:,.0f} -> {r.cand:,.0f} "
                              f"({100 * (r.ratio - 1):+.2f}%) {r.verdict}", flush=True)
        finally:
            for root in roots:
                subprocess.run(["git", "worktree", "remove", "--force", str(root)], capture_output=True)
    return {"change": change, "runs": runs, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python experiments/regress_experiments.py", description=__doc__)
    sub = parser.add_subparsers(dest="kind", required=True)
    p_aa = sub.add_parser("aa", help="false alarms: the same commit on both sides")
    p_aa.add_argument("--runs", type=int, default=10)
    p_aa.add_argument("--select", default="step or fetch")
    p_ab = sub.add_parser("ab", help="detection: the optimized fetch made slower on purpose")
    p_ab.add_argument("--copies", default="5,20,80")
    p_ab.add_argument("--runs", type=int, default=3)
    p_ab.add_argument("--select", default="resident")
    p_ab.add_argument("--rounds", type=int, default=7, help="processes per side")
    sub.add_parser("evaluate", help="re-judge the saved runs in reports/experiments with the current rule")
    p_counts = sub.add_parser("counts", help="instruction counts of the same code, N processes")
    p_counts.add_argument("--runs", type=int, default=10)
    p_counts.add_argument("--variants", default="ladder,resident+fused")
    p_cab = sub.add_parser("count-ab", help="instruction counts of HEAD vs HEAD with a small change")
    p_cab.add_argument("--change", choices=sorted(CHANGES), default="copy")
    p_cab.add_argument("--runs", type=int, default=10)
    p_cab.add_argument("--variants", default="resident,resident+fused")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.kind == "evaluate":
        result = evaluate()
    elif args.kind == "counts":
        result = counts(args.runs, args.variants)
    elif args.kind == "count-ab":
        result = count_ab(args.change, args.runs, args.variants)
        args.kind = f"count-ab-{args.change}"
    elif args.kind == "aa":
        result = aa(args.runs, args.select)
    else:
        result = ab([int(c) for c in args.copies.split(",")], args.runs, args.select, args.rounds)
    (OUT / f"{args.kind}.json").write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
