"""The script's processes of one ``--try`` (or ``--compare``) run: each child is given its
spec as data (:mod:`bench.capture.child`) and runs one side -- the baseline, a fix, the
switches' blocks, a numerics run -- and :class:`Children` keeps what every one measured, how
long each took (the estimate of what is left), and the run's start.

Ctrl-C keeps everything measured so far: an interrupted child is given time to write its
run.json (``CHILD_WRITES_S``) before the interrupt goes on."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bench.capture.child import command
from bench.fixes.catalogue import Fix
from bench.measure.result import Measurement, Result
from bench.measure.specs import Duet, ScriptSpec, TrySpec

log = logging.getLogger("bench")


def launch(words: list[str]) -> tuple[int, str]:
    """One process: its exit code and its error output. On Ctrl-C (the child had it too: it is
    in our process group) the child is given time to write what it measured before the
    interrupt goes on."""
    proc = subprocess.Popen(words, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate()
    except KeyboardInterrupt:
        try:
            proc.communicate(timeout=CHILD_WRITES_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise
    return proc.returncode, err or out


CHILD_WRITES_S = 30.0  # how long an interrupted child may take to write its run.json


class Children:
    """Runs one process of one side and keeps what every process measured."""

    def __init__(self, spec: TrySpec, tmp: Path,
                 launcher: Callable[[list[str]], tuple[int, str]] | None = None):
        # None: this module's launch, looked up when a process starts (a test replaces it there)
        self.spec, self.tmp, self.launcher = spec, tmp, launcher
        self.measured: list[Measurement] = []
        self.machine = None
        self.walls: list[float] = []  # the timed processes' (warm-up + steps)
        self.later_s = 0.0  # what the numerics and the processes' fixes are expected to take
        self.started = time.perf_counter()
        self.created = datetime.now(UTC).isoformat(timespec="seconds")  # the run's start, as reports say

    def child(self, patches: tuple[str, ...], steps: int, duet: Duet | None = None,
              command: tuple[str, ...] = ()) -> ScriptSpec:
        """What one process runs, as data: the script (or ``command``) with the patches, no
        profilers."""
        s = self.spec
        return ScriptSpec(command=command or s.command, warmup=s.warmup, steps=steps, tools=(),
                          observe_windows=0, wait=s.wait, patches=patches, seed=s.seed, losses=s.losses,
                          plugins=s.plugins, duet=duet, nproc=s.nproc, torchrun=s.torchrun)

    def run(self, side: str, repeat: int, phase: int, fix: Fix | None, *, numerics: bool = False,
            duet: Duet | None = None, notes: dict | None = None) -> Measurement:
        """One process of ``side``: timed (``steps`` measured), for its losses only (``numerics``),
        or the switches' pairs (``duet``)."""
        return self.run_many([(side, repeat, phase, fix)], numerics=numerics, duet=duet, notes=notes)[0]

    def run_many(self, jobs: list[tuple[str, int, int, Fix | None]], *, numerics: bool = False,
                 duet: Duet | None = None, notes: dict | None = None) -> list[Measurement]:
        """Processes of several sides, one after another. Never two at once, not even the short
        runs whose losses do not depend on the load: two copies of a script write the same
        files (`python -m vae train` refused the second one's output folder, made in the same
        second)."""
        steps = (self.spec.losses or 1) if numerics else (1 if duet else self.spec.steps)
        outs = [self.tmp / f"p{len(self.measured) + i}" for i in range(len(jobs))]
        words = [command(self.child(fix.patches if fix else (), steps, duet, fix.command if fix else ()),
                              out) for (_, _, _, fix), out in zip(jobs, outs, strict=True)]
        begin = time.perf_counter()
        done = []
        for job, out, w in zip(jobs, outs, words, strict=True):
            try:
                done.append((self.launcher or launch)(w))
            except KeyboardInterrupt:  # what the interrupted child wrote is kept
                if (out / "run.json").is_file():
                    self.measured.append(self._collect(job, out, (130, "interrupted"), numerics, notes))
                raise
        if not numerics and duet is None:
            self.walls.append(time.perf_counter() - begin)
        found = [self._collect(job, out, said, numerics, notes)
                 for job, out, said in zip(jobs, outs, done, strict=True)]
        self.measured += found
        return found

    def _collect(self, job: tuple[str, int, int, Fix | None], out: Path, said: tuple[int, str],
                 numerics: bool, extra: dict | None) -> Measurement:
        side, repeat, phase, fix = job
        notes = {"side": side, "repeat": repeat, "phase": phase, **(extra or {})}
        notes |= {"numerics": True} if numerics else {}
        if fix is not None:
            notes |= {"group": fix.group, "patches": list(fix.patches), "edit": fix.edit, "entry": fix.entry}
        try:
            child = Result.load(out / "run.json")
            first = _sample(child)
            self.machine = self.machine or child.machine
            return replace(first, name=f"{side} #{repeat + 1}", notes=first.notes | notes, artifacts=[])
        except Exception:  # no run.json: the script (or the patch) failed before a step was measured
            code, text = said
            lines = text.strip().splitlines()
            why = next((ln for ln in reversed(lines) if ln.strip() and not ln.startswith(" ")), "")
            return Measurement(name=f"{side} #{repeat + 1}", status="failed",
                               reason=f"exit {code}: {why[-300:]}", notes=notes)

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




