"""``python -m bench regress``: base vs candidate on this machine, interleaved, then compare.

Timings drift *between* runs on a shared machine more than within one (docs/method.md), so a
baseline recorded earlier, or the rounds of one run pooled, cry wolf. Here the base commit is
checked out into a temporary git worktree, and short benchmark processes of base (A) and
candidate (B) alternate -- A B, B A, A B, ... -- so drift hits both alike. Each process gives
one median per benchmark; those per-process medians are the samples the U test sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench.defaults import BUILTIN, BUILTIN_SUITE_VARIANTS
from bench.instructions.compare import DEFAULT_INSTRUCTIONS_THRESHOLD
from bench.instructions.sides import count_sides
from bench.measure.rule import Rule, min_samples_for
from bench.options import WorkloadChoice
from bench.output import check_writable_dir, move_into, staging
from bench.regress.benchjson import BenchFileError, load, load_file
from bench.regress.compare import checked_compare, exit_code, render, verdict_doc

SUITES = "bench/suites"


@dataclass(frozen=True)
class RegressSpec:
    """What a ``regress`` asks for (built by ``bench.commands.regress``)."""

    choice: WorkloadChoice  # both sides benchmark it (a file path is read in each side's tree)
    base: str | None = None  # the git ref of the base (None: origin/main, else HEAD~1)
    processes: int = 7  # per side
    select: str = "step or fetch"  # pytest -k expression of benchmarks
    out: Path = Path("reports/regress")
    threshold: float = Rule.threshold
    alpha: float = Rule.alpha
    max_spread: float = Rule.max_spread
    instructions_threshold: float = DEFAULT_INSTRUCTIONS_THRESHOLD
    timing_only: bool = False
    instructions: bool = True  # count both sides' instructions under callgrind
    instructions_skipped: str = "--no-instructions"  # why not, where not


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def resolve_base(ref: str | None, repo: Path) -> tuple[str, str]:
    """(ref as named, commit sha); raises ValueError with a readable message."""
    candidates = [ref] if ref else ["origin/main", "HEAD~1"]
    for name in candidates:
        try:
            return name, _git("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", cwd=repo)
        except subprocess.CalledProcessError:
            continue
    if ref:
        raise ValueError(f"--base {ref!r} is not a commit of this repository: name a branch, "
                         "tag or sha (git log --oneline shows them)")
    raise ValueError("no default base: neither origin/main nor HEAD~1 exists; pass --base REF")


def merge_processes(paths: list[Path], target: Path, counts: Path | None = None) -> Path:
    """One JSON per side whose 'rounds' are the per-process medians of each benchmark, with the
    side's instruction counts (``counts``, from ``bench instructions``) beside them."""
    per_name: dict[str, dict] = {}
    for path in paths:
        _, benchmarks = load(path)
        for b in benchmarks:
            entry = per_name.setdefault(b.name, {"name": b.name, "group": b.group,
                                                 "params": b.params, "extra_info": b.extra_info,
                                                 "stats": {"data": []}})
            entry["stats"]["data"].append(b.median)
    doc = {"machine_info": {}, "benchmarks": list(per_name.values()),
           "note": f"each round is the median of one process: {[p.name for p in paths]}"}
    if counts is not None:
        doc["instructions"] = json.loads(counts.read_text())["instructions"]
    target.write_text(json.dumps(doc, indent=1))
    return target


def _run_side(root: Path, json_path: Path, spec: RegressSpec, extra: list[str]) -> None:
    choice = spec.choice
    cmd = [sys.executable, "-m", "pytest", SUITES, "-q", "-p", "no:cacheprovider",
           "-k", spec.select, "--vb-quick", "--vb-data-dir", str(choice.data_dir.resolve()),
           "--vb-limit", str(choice.limit), "--vb-workload", choice.workload, "--benchmark-json",
           str(json_path), *(["--vb-variants", ",".join(choice.variants)] if choice.variants else []),
           *choice.data_options("--vb-"), *extra]
    # The side's pytest is a session of its own: an xdist worker's variables (regress run from a
    # parallel test) would make pytest-benchmark switch itself off there.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not json_path.exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise RuntimeError(f"benchmark process in {root} failed (exit {proc.returncode}):\n{tail}")


def run_regress(spec: RegressSpec, candidate_extra: Sequence[str] = ()) -> int:
    """Exit 0 no regression, 1 a regression, 2 bad input or a failed benchmark process, 3 no
    regression but some benchmark ``noisy`` (no verdict).

    ``candidate_extra``: more pytest arguments for the candidate's processes only -- how the
    experiments (``experiments/regress_experiments.py``) inject a known change without a commit;
    not a user option."""
    from bench.errors import UsageError

    repo = Path.cwd()
    try:
        repo = Path(_git("rev-parse", "--show-toplevel"))
        name, sha = resolve_base(spec.base, repo)
        rule = Rule(spec.threshold, spec.alpha, max_spread=spec.max_spread,
                    min_samples=min_samples_for(spec.alpha))
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise UsageError("not inside a git repository: run `nox -s regress` from a clone") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    spec = _settled(spec)
    try:
        check_writable_dir(spec.out)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    spec = replace(spec, out=spec.out.resolve())
    extra = list(candidate_extra)
    # Everything is written into a staging folder and moved into --out only at the end: an
    # interrupted run leaves the earlier run's files as they were.
    with staging(spec.out) as stage, tempfile.TemporaryDirectory(prefix="vaebench-base-") as tmp:
        code = _measure_and_compare(spec, repo, name, sha, rule, extra, stage, Path(tmp) / "base")
        move_into(stage, spec.out)
    print(f"Table: {spec.out / 'regress.md'}; per-process JSON: {spec.out}/")
    return code


def _settled(spec: RegressSpec) -> RegressSpec:
    """The built-in workload's suite variants where none were named; the instruction counts
    dropped, with the reason, where --timing-only or a missing callgrind says so."""
    from bench.errors import UsageError

    if spec.choice.variants is None and spec.choice.workload == BUILTIN:
        spec = replace(spec, choice=replace(spec.choice, variants=tuple(BUILTIN_SUITE_VARIANTS.split(","))))
    if spec.timing_only:
        spec = replace(spec, instructions=False, instructions_skipped="--timing-only")
    if spec.instructions:
        from bench.instructions.count import missing_tool

        reason = missing_tool()
        if reason:  # said in the table and here, never silently dropped
            print(f"Instruction counts skipped: {reason}; the verdict falls back to the timings "
                  "alone", file=sys.stderr)
            spec = replace(spec, instructions=False,
                           instructions_skipped=f"{reason}; the verdict is by timing alone")
    needed = min_samples_for(spec.alpha)
    if spec.processes < needed:
        raise UsageError(f"--processes {spec.processes}: at least {needed} per side are needed for the U "
                         f"test to reach p < {spec.alpha}")
    return spec


def _interleave(spec: RegressSpec, repo: Path, name: str, sha: str, extra: list[str],
                stage: Path, base_root: Path) -> dict[str, list[Path]]:
    """Run base and candidate processes alternately (A B, B A, ...); their JSON files, per side."""
    from bench.errors import UsageError
    from bench.measure.alternation import alternate
    from plumbing.progress import bar as progress_bar

    _git("worktree", "add", "--detach", "--force", str(base_root), sha, cwd=repo)
    try:
        if not (base_root / SUITES).is_dir():
            raise UsageError(f"base {name} ({sha[:10]}) has no {SUITES}: pick a newer --base")
        print(f"Base {name} ({sha[:10]}) vs candidate (work tree {repo}); "
              f"{spec.processes} interleaved processes per side")
        files: dict[str, list[Path]] = {"base": [], "candidate": []}
        if spec.instructions:
            print("Counting instructions of both sides under callgrind, side by side (~2 min)...",
                  flush=True)
            started = time.perf_counter()
            for side, path in count_sides(spec.choice, {"base": base_root, "candidate": repo}, stage).items():
                files[f"{side}-instructions"] = [path]
            print(f"Counted both sides in {time.perf_counter() - started:.0f} s", flush=True)
        with progress_bar(total=2 * spec.processes, unit="process") as bar:
            for i, side in alternate(("base", "candidate"), spec.processes):
                bar.set_description(side)
                path = stage / f"{side}-{i}.json"
                root = base_root if side == "base" else repo
                _run_side(root, path, spec, extra if side == "candidate" else [])
                files[side].append(path)
                bar.update()
        return files
    except RuntimeError as exc:
        raise UsageError(str(exc)) from None
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base_root)], cwd=repo,
                       capture_output=True)


def _measure_and_compare(spec: RegressSpec, repo: Path, name: str, sha: str, rule: Rule,
                         extra: list[str], stage: Path, base_root: Path) -> int:
    from bench.errors import UsageError

    files = _interleave(spec, repo, name, sha, extra, stage, base_root)
    base_json = merge_processes(files["base"], stage / "base.json", *files.get("base-instructions", []))
    cand_json = merge_processes(files["candidate"], stage / "candidate.json",
                                *files.get("candidate-instructions", []))
    try:
        base, cand = load_file(base_json), load_file(cand_json)
        judged = checked_compare(base, cand, rule, "base", "candidate", spec.instructions_threshold,
                                 timing_only=spec.timing_only)
    except (BenchFileError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if not spec.instructions:
        judged.notes.append(f"Instruction counts: not taken ({spec.instructions_skipped}).")
    print(render(judged, rule, markdown=False))
    (stage / "regress.md").write_text(render(judged, rule, markdown=True))
    (stage / "verdict.json").write_text(json.dumps(verdict_doc(judged, rule), indent=1))
    from bench.regress.dashboard import regress_page

    (stage / "report.html").write_text(regress_page(judged, rule))
    return exit_code(judged)
