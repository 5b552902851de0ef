"""``vaebench run --try``: the baseline process first (what it built decides the fixes), then
the baseline, itself again (A/A) and every fix in rotated order, ``repeats`` processes each;
then the faster fixes together against new baseline processes. Every process is a plain
``vaebench run`` of the unmodified script with the fix's patches applied before it starts (no
profilers, the same warm-up, steps and seed), its median step one sample.

Ctrl-C or ``--max-minutes`` keeps every process measured so far: the run is saved and rendered
as partial.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench.errors import UsageError
from bench.fixes import catalogue
from bench.fixes.catalogue import Fix
from bench.measure import trials
from bench.measure.alternation import alternate
from bench.measure.result import Measurement, Result
from bench.measure.specs import TrySpec
from plumbing.argtypes import option_value

log = logging.getLogger("bench")


def launch(words: list[str]) -> tuple[int, str]:
    """One process: its exit code and its error output."""
    proc = subprocess.run(words, capture_output=True, text=True)
    return proc.returncode, proc.stderr or proc.stdout


class Runner:
    """Runs one process of one side and keeps what every process measured."""

    def __init__(self, spec: TrySpec, tmp: Path, launch: Callable[[list[str]], tuple[int, str]] = launch):
        self.spec, self.tmp, self.launch = spec, tmp, launch
        self.measured: list[Measurement] = []
        self.machine = None
        self.walls: list[float] = []
        self.started = time.perf_counter()

    def command(self, patches: tuple[str, ...], out: Path) -> list[str]:
        s = self.spec
        words = [sys.executable, "-m", "bench", "run", "--raw", "--tools", "none", "--observe-windows", "0",
                 "--steps", str(s.steps), "--warmup", str(s.warmup), "--wait", str(s.wait),
                 "--losses", str(s.losses), "--out", str(out)]
        words += ["--seed", str(s.seed)] if s.seed is not None else []
        for p in patches:
            words += ["--apply", p]
        for module in s.plugins:
            words += ["--fixes-from", module]
        if s.nproc:
            words += ["--nproc", str(s.nproc)] + (["--torchrun", s.torchrun] if s.torchrun else [])
        return words + list(s.command)

    def run(self, side: str, repeat: int, phase: int, fix: Fix | None) -> Measurement:
        out = self.tmp / f"p{len(self.measured)}"
        begin = time.perf_counter()
        code, said = self.launch(self.command(fix.patches if fix else (), out))
        self.walls.append(time.perf_counter() - begin)
        notes = {"side": side, "repeat": repeat, "phase": phase}
        if fix is not None:
            notes |= {"group": fix.group, "patches": list(fix.patches), "edit": fix.edit}
        try:
            child = Result.load(out / "run.json")
            m = replace(_sample(child), name=f"{side} #{repeat + 1}", notes=notes, artifacts=[])
            self.machine = self.machine or child.machine
        except Exception:  # no run.json: the script (or the patch) failed before a step was measured
            lines = said.strip().splitlines()
            why = next((ln for ln in reversed(lines) if ln.strip() and not ln.startswith(" ")), "")
            m = Measurement(name=f"{side} #{repeat + 1}", status="failed",
                            reason=f"exit {code}: {why[-300:]}", notes=notes)
        self.measured.append(m)
        return m

    def per_process(self) -> float:
        return sorted(self.walls)[len(self.walls) // 2] if self.walls else 0.0

    def elapsed_min(self) -> float:
        return (time.perf_counter() - self.started) / 60


def _sample(child: Result) -> Measurement:
    """The measurement one process contributes: the script's, or under torchrun rank 0's (in
    synchronous training every rank steps together, and rank 0's losses are the ones a user
    logs) -- failed with the first failed rank's reason if any rank failed."""
    first = child.measurements[0]
    bad = next((m for m in child.measurements if m.status != "ok"), None)
    if bad is None or bad is first:
        return first
    return replace(first, status="failed", reason=f"{bad.name}: {bad.reason}")


def _nodes(torchrun: str) -> int:
    """The most nodes torchrun's options ask for (``--nnodes 2`` or ``--nnodes 1:4``)."""
    last = (option_value(shlex.split(torchrun), "--nnodes") or "1").split(":")[-1]
    return int(last) if last.isdigit() else 1


def check(args: argparse.Namespace) -> None:
    """``--try``'s bad input: one line, exit 2."""
    from bench.measure.rule import Rule, min_samples_for

    if args.steps == 0:
        raise UsageError("--try --steps 0: each process needs a fixed window of steps (its median is one "
                         "sample); give --steps N, e.g. --steps 50")
    need = min_samples_for(Rule().alpha)
    if args.repeats < need:
        raise UsageError(f"--try --repeats {args.repeats}: at least {need} processes a side are needed for "
                         f"a verdict at p < {Rule().alpha}")
    if args.nproc and _nodes(args.torchrun or "") > 1:
        raise UsageError("--try across several nodes is not built: each process of the schedule would have "
                         "to start on every node at once; try the fixes on one node (--nproc N without "
                         "--nnodes), then run the chosen ones across the nodes")
    unknown = [f for f in args.fixes or [] if f not in catalogue.names()]
    if unknown:
        raise UsageError(f"--fixes: unknown fix {unknown[0]!r}: choose from {', '.join(catalogue.names())}")


def schedule(spec: TrySpec, fixes: list[Fix], runner: Runner) -> str:
    """Phase 1: baseline, A/A and each fix, rotated; returns why it stopped early ("" if it did not)."""
    sides = [trials.BASELINE, trials.AGAIN, *(f.name for f in fixes)]
    by_name = {f.name: f for f in fixes}
    total = len(sides) * spec.repeats
    done, given_up = 1, set()
    for i, side in alternate(sides, spec.repeats):
        if i == 0 and side == trials.BASELINE:
            continue  # the first baseline process was the probe
        if side in given_up:
            continue
        why = _over_time(spec, runner, total - done)
        if why:
            return why
        left = runner.per_process() * (total - done) / 60
        log.info("process %d of %d: %s (about %.1f min left)", done + 1, total, side, left)
        m = runner.run(side, i, 1, by_name.get(side))
        done += 1
        if m.status != "ok" and side in by_name:
            log.warning("%s failed (%s): its other processes are skipped, the other fixes go on",
                        side, m.reason)
            given_up.add(side)
    return ""


def _over_time(spec: TrySpec, runner: Runner, left: int) -> str:
    if spec.max_minutes is not None and runner.elapsed_min() + runner.per_process() / 60 > spec.max_minutes:
        return (f"stopped at --max-minutes {spec.max_minutes:g} with {left} processes not run: "
                "the fixes with fewer processes have wider intervals or none")
    return ""


def combine(spec: TrySpec, fixes: list[Fix], runner: Runner, result: Result) -> tuple[TrySpec, str]:
    """Phase 2: the faster fixes that kept the result, one per group, applied together."""
    chosen = [f for f in fixes if f.name in {r.name for r in trials.choose(trials.rows(result))}]
    if len(chosen) < 2:
        return spec, ""
    together = Fix(trials.COMBINED, "combined", tuple(p for f in chosen for p in f.patches),
                   "; ".join(f.edit for f in chosen))
    spec = replace(spec, combination=tuple(f.name for f in chosen))
    log.info("the faster fixes together: %s, against the baseline, %d processes each",
             " + ".join(spec.combination), spec.repeats)
    for i, side in alternate([trials.BASELINE, trials.COMBINED], spec.repeats):
        why = _over_time(spec, runner, 0)
        if why:
            return spec, why
        runner.run(side, i, 2, together if side == trials.COMBINED else None)
    return spec, ""


def run_try(args: argparse.Namespace, command: tuple[str, ...], output,  # output: Output
            launcher: Callable[[list[str]], tuple[int, str]] | None = None) -> Result:
    import importlib

    for module in args.fixes_from:
        try:
            importlib.import_module(module)  # a user's own entries register themselves
        except ImportError as exc:
            raise UsageError(f"--fixes-from {module}: cannot import it ({exc}); put its folder on "
                             "PYTHONPATH or run from there") from None
    check(args)
    spec = TrySpec(command=command, warmup=args.warmup, steps=args.steps, repeats=args.repeats,
                   seed=args.seed if args.seed is not None else 0, losses=args.losses,
                   tolerance=args.tolerance, wait=args.wait, plugins=tuple(args.fixes_from),
                   max_minutes=args.max_minutes, nproc=args.nproc or 0, torchrun=args.torchrun or "")
    with tempfile.TemporaryDirectory(prefix="vaebench-try-", dir=output.stage) as tmp:
        runner = Runner(spec, Path(tmp), launcher or launch)
        why = ""
        try:
            spec, fixes, why = _phase_one(spec, runner, args.fixes)
            if not why:
                result = _result(spec, runner, why)
                spec, why = combine(spec, fixes, runner, result)
        except KeyboardInterrupt:
            why = f"interrupted (Ctrl-C) after {len(runner.measured)} processes: what they measured is kept"
            log.warning(why)
    return _result(spec, runner, why)


def _phase_one(spec: TrySpec, runner: Runner, asked: list[str] | None) -> tuple[TrySpec, list[Fix], str]:
    log.info("the baseline first: %s (seed %s), %d warm-up + %d measured steps a process",
             spec.shell(), spec.seed, spec.warmup, spec.steps)
    first = runner.run(trials.BASELINE, 0, 1, None)
    if first.status != "ok":
        raise UsageError(f"the baseline itself failed ({first.reason}): run it with plain `vaebench run` "
                         "to see why")
    fixes, skipped = catalogue.propose(catalogue.Seen.of(first, ranks=spec.nproc or 1), asked)
    spec = replace(spec, fixes=tuple(f.name for f in fixes),
                   skipped=tuple(f"{k}: {v}" for k, v in skipped.items()))
    for entry, reason in skipped.items():
        log.info("skipped %s: %s", entry, reason)
    n = (2 + len(fixes)) * spec.repeats
    log.info("%d fixes x %d repeats + the baseline and the A/A: %d processes, ~%.0f s a process: about "
             "%.1f minutes (the faster fixes together after it: %d more)", len(fixes), spec.repeats, n,
             runner.per_process(), n * runner.per_process() / 60, 2 * spec.repeats)
    return spec, fixes, schedule(spec, fixes, runner)


def _result(spec: TrySpec, runner: Runner, why: str) -> Result:
    import torch

    from bench.measure.environment import Environment

    machine = runner.machine or Environment.capture(torch.device("cpu"))
    return Result(kind="try", spec=spec, machine=machine, measurements=list(runner.measured),
                  partial={"try/schedule": why} if why else {},
                  duration_s=time.perf_counter() - runner.started)
