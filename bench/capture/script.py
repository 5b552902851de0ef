"""Run a user's script unchanged, as ``python train.py`` (or ``python -m pkg.mod``) would, with
the recorder's hooks installed: its ``sys.argv``, ``__main__``, its folder first on
``sys.path``. The script's own outcome is kept apart from ours: a script that raises keeps its
traceback and exit code, and what was measured before is returned with it.
"""

from __future__ import annotations

import _thread
import importlib.util
import os
import runpy
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.capture import duet, oom
from bench.capture.counted import COUNTED, MemoryWindow, counted
from bench.capture.patches import apply, restore, seed_everything
from bench.capture.recorder import Recorder
from bench.capture.windows import Stop, Window
from bench.defaults import SETTLE, UNHOOKED
from bench.errors import UsageError
from bench.measure.quiet import without_profiler_chatter
from bench.measure.result import Breakdown, OutOfMemory
from bench.measure.specs import ScriptSpec
from bench.profile.tools import Profiler, make


@dataclass
class Outcome:
    """What happened to the script, and the recorder with everything it measured."""

    recorder: Recorder
    stopped: bool = False  # we stopped it after the last window (the plan was complete)
    exit_code: int | None = None  # the script's own: sys.exit(n), 1 on an exception, 130 on Ctrl-C
    error: str = ""  # the script's exception, one line, with the step it happened at
    interrupted: bool = False
    no_step: bool = False  # the wait for a first step ran out
    waited: str = ""  # what the wait saw when it gave up
    flops_per_step: int | None = None  # FlopCounterMode over the one step after the measured window
    breakdown: Breakdown | None = None  # where the memory went at the memory window's step's peak
    breakdown_error: str = ""
    oom: OutOfMemory | None = None  # the script ran out of memory: explained
    artifacts: list[str] = field(default_factory=list)  # paths relative to the output folder


def check_target(command: tuple[str, ...]) -> None:
    """UsageError (one line, exit 2) for a script that is not there or not Python."""
    if not command:
        raise UsageError("name a script to run: vaebench run train.py [its arguments] "
                         "(or -m package.module)")
    if command[0] == "-m":
        if len(command) < 2:
            raise UsageError("-m needs a module name: vaebench run -m package.module [its arguments]")
        try:
            found = importlib.util.find_spec(command[1])
        except (ImportError, ValueError) as exc:
            raise UsageError(f"-m {command[1]}: cannot find it ({exc})") from None
        if found is None:
            raise UsageError(f"-m {command[1]}: no such module; is it installed or on PYTHONPATH?")
        return
    path = Path(command[0])
    if not path.is_file():
        raise UsageError(f"{path}: no such script (run it as `vaebench run path/to/train.py`)")
    try:
        compile(path.read_bytes(), str(path), "exec")
    except SyntaxError as exc:
        raise UsageError(f"{path} has a syntax error at line {exc.lineno}: {exc.msg}; fix it, then run "
                         "again") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path} is not a Python script ({exc})") from None


def plan(spec: ScriptSpec) -> list[Window]:
    """The memory's window (two steps and a settling one), the first measured steps, one counted
    step (FLOPs), each tool's windows alternated with plain ones (P T, T P, ...), one settling
    step, the rest of the measured steps, then the windows with the part hooks off alternated
    with plain ones (observing's cost). The profilers come after only ``first_measured`` steps
    and observing's hundreds of steps come last, so that a script of ~100 steps gets every
    profiler; the settling step: the last profiler stops at the next step's first part (never
    inside the optimizer's hook), which must not land in a measured step. (Runs saved before
    ``observe_last`` had observing first.)"""
    if spec.steps == 0:
        return [Window("measure", sys.maxsize)]
    if spec.duet is not None:  # --try's switches: nothing else after the measured window
        return [Window("measure", spec.steps), *duet.plan(spec.duet)]
    # The memory window first, right after the warm-up: a script that fails (out of memory, most
    # of all) still has its breakdown. Its profiler stops at the next step's first part (never
    # inside the optimizer's scope), a settling step. The FLOPs after the first measured steps.
    memory = [Window("memory", COUNTED["memory"] - 1), Window(SETTLE, 1)] if "memory" in spec.counted \
        else []
    windows = [*memory, Window("measure", min(spec.steps, spec.first_measured)),
               *(Window(kind, COUNTED[kind]) for kind in spec.counted if kind != "memory")]
    for tool in spec.window_order():
        if tool == SETTLE:
            windows.append(Window(SETTLE, 1))
            continue
        if tool == "measure":  # the rest of the measured steps, after the profilers'
            windows.append(Window("measure", spec.steps - spec.first_measured))
            continue
        steps = spec.observe_steps if tool == UNHOOKED else spec.profile_steps
        for i in range(spec.observe_windows if tool == UNHOOKED else spec.profile_windows):
            pair = [Window("plain", steps, tool=tool), Window(tool, steps)]
            windows += pair if i % 2 == 0 else pair[::-1]
    return windows


class _Unhooked(Profiler):
    """Detaches the hooks that time parts for its windows (started and stopped right at the
    step's end: its windows have no first part to defer to)."""

    deferred = False

    def __init__(self, recorder_ref: list[Any]) -> None:
        self.recorder_ref = recorder_ref

    def start(self) -> None:
        self.recorder_ref[0].detach()

    def stop(self) -> None:
        self.recorder_ref[0].attach()


def line_targets(names: tuple[str, ...], recorder_ref: list[Any]) -> tuple[list[Any], list[str]]:
    """line_profiler's functions in a script: those named (``--lines``: NAME in the script or
    module:function), or by default the one that calls ``optimizer.step()`` and the DataLoader's
    dataset ``__getitem__``; and notes on what could not be traced."""
    import gc
    import types

    found: list[Any] = []
    notes: list[str] = []
    for name in names:
        module, _, attr = name.rpartition(":")
        owner = sys.modules.get(module or "__main__")
        fn = getattr(owner, attr, None) if owner is not None else None
        if callable(fn) and hasattr(fn, "__code__"):
            found.append(fn)
        else:
            notes.append(f"{name}: no such function (NAME in the script, or module:function)")
    if names:
        return found, notes
    recorder = recorder_ref[0]
    code = recorder.step_caller
    if code is not None and code.co_name != "<module>":
        found += [f for f in gc.get_referrers(code)
                  if isinstance(f, types.FunctionType) and f.__code__ is code][:1]
        notes.append(f"{code.co_name} (calls optimizer.step()) is traced only in calls that "
                     "begin after the first window starts: a training loop already running "
                     "shows no lines; name the function called once per step with --lines")
    elif code is not None:
        notes.append("the training loop is at the script's top level, not in a function: "
                     "name one with --lines")
    getitem = getattr(type(recorder.dataset), "__getitem__", None)
    if getitem is not None and hasattr(getitem, "__code__"):
        found.append(getitem)
    return found, notes


def _tools(spec: ScriptSpec, worker: str, recorder_ref: list[Any]) -> dict[str, Profiler]:
    made: dict[str, Profiler] = {}
    if spec.duet is not None:
        return duet.tools(spec.duet, lambda: recorder_ref[0].builds.live)
    if spec.steps:
        made.update(counted(spec))
        if spec.observe_windows:
            made[UNHOOKED] = _Unhooked(recorder_ref)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        for tool in spec.tools:
            made[tool] = make(tool, device=device, worker=worker,
                              find=lambda: line_targets(spec.lines, recorder_ref))
    return made


def run_script(spec: ScriptSpec, out: Path, *, worker: str = "rank0", label: str | None = None,
               holder: list[Outcome] | None = None) -> Outcome:
    """Run the script under the recorder; profiler files go into ``out``: ``<label>.prof`` and
    ``tb/<script>/<worker>.pt.trace.json`` (label: the script's name, one per rank under torchrun)."""
    check_target(spec.command)
    ref: list[Any] = []
    tools = _tools(spec, worker, ref)
    recorder = Recorder(warmup=spec.warmup, windows=plan(spec), step_on=spec.step_on, tools=tools)
    ref.append(recorder)
    outcome = Outcome(recorder)
    if holder is not None:  # the caller keeps it even if a signal cuts this function short
        holder.append(outcome)
    recorder.keep_losses = spec.losses
    recorder.after_warmup += oom.record_history() if spec.warmup else []  # off before the measured steps

    def failed(exc: BaseException) -> None:  # the script raised: an out-of-memory explained
        window = tools.get("memory")
        started = bool(recorder.steps_seen or recorder.forwards_seen or recorder.backwards_seen)
        _raised(outcome, exc, recorder.steps_seen if started else -1,
                out / f"{label or spec.name}.oom_snapshot.pickle",
                window.memory.first if isinstance(window, MemoryWindow) and window.memory.first else None,
                recorder.samples.last)

    _run_recorded(spec, outcome, failed)
    if outcome.no_step and outcome.exit_code == 130:
        outcome.exit_code = 2
    _collect(outcome, tools, out, spec.name, label)
    return outcome


def _run_recorded(spec: ScriptSpec, outcome: Outcome, failed: Callable[[BaseException], None]) -> None:
    """The script run as ``python`` would, under the recorder and a watchdog; what it changes
    of this process (argv, sys.path, a memory limit) and our patches put back however it ends."""
    recorder = outcome.recorder
    watchdog = _Watchdog(outcome, spec.wait)
    argv, path0 = sys.argv[:], sys.path[:]
    limits = oom.limits()  # a script that limits its memory limits ours: restored after it
    undo = _prepare(spec)
    recorder.install()
    watchdog.start()
    try:
        with without_profiler_chatter():
            _run(spec.command)
    except BaseException as exc:  # every way a script ends (ours, its own, Ctrl-C): told apart in _ended
        _ended(outcome, exc, failed)
    finally:
        watchdog.stop()
        with without_profiler_chatter():  # a profiler still running is stopped here
            recorder.close()
        sys.argv[:], sys.path[:] = argv, path0
        oom.restore_limits(limits)
        restore(undo)


def _ended(outcome: Outcome, exc: BaseException, failed: Callable[[BaseException], None]) -> None:
    """How the script ended, in ``outcome``: stopped by us once the windows were complete, its
    own exit, Ctrl-C, or an exception (``failed``)."""
    if isinstance(exc, Stop):
        outcome.stopped = True
    elif isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        outcome.exit_code = code
        if code:
            outcome.error = f"the script exited with code {code} after {outcome.recorder.steps_seen} steps"
    elif isinstance(exc, KeyboardInterrupt):
        if outcome.no_step:
            outcome.exit_code = 2
        else:
            outcome.interrupted, outcome.exit_code = True, 130
    else:
        failed(exc)


def _raised(outcome: Outcome, exc: BaseException, steps: int, snapshot: Path,
            before: dict[int, tuple[int, str]] | None, batch: int | None) -> None:
    """The script's own exception: said with its step (``steps`` -1: before its first step began,
    in its setup), explained where it ran out of memory (now, while the failing frames still hold
    their tensors), its traceback printed as python would."""
    outcome.exit_code = 1
    outcome.error = f"the script raised {type(exc).__name__}: {exc} " + (
        f"(in its step {steps + 1}, after {steps} complete)" if steps >= 0 else "(before its first step)")
    if oom.out_of_memory(exc):
        try:
            outcome.oom = oom.explain(exc, steps + 1, snapshot, before)
            outcome.oom.batch = batch
        except Exception as failed:  # under the script's own memory cap, explaining can fail too
            outcome.error += f"; it could not be explained ({type(failed).__name__}: {failed})"
        outcome.artifacts += [outcome.oom.snapshot] if outcome.oom and outcome.oom.snapshot else []
    traceback.print_exc()


def _collect(outcome: Outcome, tools: dict[str, Profiler], out: Path, name: str, label: str | None) -> None:
    """What the counted windows found, and each profiler's files (a failure to write one costs
    no measurement)."""
    outcome.flops_per_step = getattr(tools.get("flops"), "total", None)
    memory = tools.get("memory")
    if isinstance(memory, MemoryWindow):
        outcome.breakdown, outcome.breakdown_error = memory.result()
    for kind, tool in tools.items():
        try:
            written = tool.write(out, name if kind == "kineto" else label or name)
        except Exception as exc:
            outcome.error = outcome.error or f"writing the {kind} output failed: {exc}"
            continue
        outcome.artifacts += [str(p.relative_to(out)) for p in written]


def _prepare(spec: ScriptSpec) -> list[Any]:
    """``--seed``, a user's fix modules and ``--try``'s patches, before the script starts: the
    undo list of the patches."""
    import importlib

    for module in spec.plugins:
        importlib.import_module(module)  # registers its patches (checked by the parent already)
    if spec.seed is not None:
        seed_everything(spec.seed)
    return apply(spec.patches)


class _Watchdog(threading.Thread):
    """Waits for the first step, ``wait`` seconds at a time, for as long as the first
    ``optimizer.step()`` makes progress (a ``backward()`` more inside it than at the last look:
    an optimizer whose ``step(closure)`` runs many passes, as LBFGS does, is training, not
    stuck); then stops the script (KeyboardInterrupt) with what it saw."""

    def __init__(self, outcome: Outcome, wait: float):
        super().__init__(daemon=True)
        self.outcome, self.wait = outcome, wait
        self.done = threading.Event()

    def run(self) -> None:
        rec, seen, waited = self.outcome.recorder, -1, 0.0
        while not self.done.wait(self.wait):
            waited += self.wait
            if rec.steps_seen > 0:
                return
            if rec.in_optimizer and rec.backwards_seen > seen:
                seen = rec.backwards_seen  # a step(closure) making progress: wait once more
                continue
            self.outcome.no_step, self.outcome.waited = True, waited_for(rec, waited)
            _thread.interrupt_main()
            return

    def stop(self) -> None:
        self.done.set()


def waited_for(rec: Recorder, seconds: float) -> str:
    """What the wait for a first step saw, and what to do about it, in one line."""
    if rec.in_optimizer:
        return (f"the first optimizer.step() has not returned after {seconds:g} s; backward() ran "
                f"{rec.backwards_seen} times inside it -- an optimizer with a closure? "
                "(--wait to wait longer)")
    if rec.backwards_seen:
        return (f"backward() ran {rec.backwards_seen} times but no optimizer.step() returned in "
                f"{seconds:g} s (--wait to wait longer, or --step-on backward for a script that updates "
                "by hand)")
    seen = f"; forward ran {rec.forwards_seen} times but no backward()" if rec.forwards_seen else ""
    return (f"no optimizer.step() or backward() in {seconds:g} s of running{seen}: is this a training "
            "script? (--wait to wait longer for a slow start)")


def _run(command: tuple[str, ...]) -> None:
    if command[0] == "-m":
        sys.argv[:] = [command[1], *command[2:]]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(command[1], run_name="__main__", alter_sys=True)
    else:
        path = Path(command[0])
        sys.argv[:] = [str(path), *command[1:]]
        sys.path.insert(0, str(path.resolve().parent))  # its folder importable, as python does
        runpy.run_path(str(path), run_name="__main__")
