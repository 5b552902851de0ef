"""The ``profile`` and ``report`` commands: validate, run, write through a staging folder.

Files are written into a staging folder beside ``--out`` and moved in only when complete, so
a run that fails or is interrupted half-way leaves the previous reports as they were.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.errors import UsageError
from bench.staging import LOCK_NAME

log = logging.getLogger("bench")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _CurrentStderr(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment, so a second run in one process (or a captured
    one) does not write into a stream that is gone."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging() -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not any(isinstance(h, _CurrentStderr) for h in root.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)


def _device(name: str):  # -> torch.device
    from vae.device import DeviceError, resolve_device

    try:
        return resolve_device(name)
    except DeviceError as exc:
        raise UsageError(str(exc)) from None


def _plan_and_tools(args: argparse.Namespace):  # -> tuple[Plan, tuple[str, ...]]
    from bench.measure.engine import Plan
    from bench.profile.passes import TOOLS

    tools = () if args.tools == ["none"] else tuple(args.tools)
    bad = [t for t in tools if t not in TOOLS]
    if bad:
        raise UsageError(f"--tools: unknown tool {bad[0]!r}: choose from {', '.join(TOOLS)} (or none)")
    if len(set(args.variants or [])) != len(args.variants or []):
        raise UsageError(f"--variants lists a name twice: {','.join(args.variants)}")
    if args.variants == []:
        raise UsageError("--variants is empty: name at least one variant")
    if args.quick:
        args.rounds, args.profile_rounds, args.profile_steps, args.trace_steps, args.epochs = 60, 5, 3, 5, 0
    from bench.measure.stats import MIN_SAMPLES

    for option in ("rounds", "profile_rounds"):
        if getattr(args, option) < MIN_SAMPLES:
            raise UsageError(f"--{option.replace('_', '-')} {getattr(args, option)}: at least "
                             f"{MIN_SAMPLES} are needed for a 95% interval")
    plan = Plan(rounds=args.rounds, steps=args.steps, warmup=args.warmup,
                bound=not args.no_bound, epochs=args.epochs, footprint=not args.no_footprint)
    return plan, tools


def _progress(enabled: bool, bars: list) -> Callable[[str, int], Callable[[], None]]:
    from tqdm.auto import tqdm

    def start(stage: str, total: int) -> Callable[[], None]:
        bar = tqdm(total=total, desc=stage, unit="step", disable=not enabled)
        bars.append(bar)
        return bar.update

    return start


def run_profile(args: argparse.Namespace) -> int:
    plan, tools = _plan_and_tools(args)
    device = _device(args.device)
    with fresh_out(args.out):
        return _profile_into(args, plan, tools, device)


@contextmanager
def fresh_out(out: Path) -> Iterator[None]:
    """Create ``out`` for a run; when the run ends without publishing anything (bad input, nothing
    measured, Ctrl-C), leave no trace: a folder this run made is removed, and a folder that was
    there keeps what it held (the lock file this run added is removed)."""
    from bench.staging import check_writable_dir

    existed, lock = out.is_dir(), out / LOCK_NAME
    lock_existed = lock.exists()
    try:
        check_writable_dir(out)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield
    except BaseException:
        if not existed and not (out / "run.json").exists():  # nothing of this run was published
            shutil.rmtree(out, ignore_errors=True)
        elif existed and not lock_existed:
            lock.unlink(missing_ok=True)
        raise


def _profile_into(args: argparse.Namespace, plan, tools, device) -> int:
    setup_logging()
    import torch

    from bench.runner import NothingMeasured, RunSpec, run
    from bench.workload import Context, WorkloadError, variants_of

    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = Context(device=device, batch_size=args.batch_size, seed=args.seed, data_dir=args.data_dir,
                  dataset=args.dataset, limit=args.limit, progress=not args.no_progress,
                  variants=tuple(args.variants) if args.variants else None)
    try:
        variants = variants_of(args.workload, ctx)
    except WorkloadError as exc:
        raise UsageError(str(exc)) from None
    spec = RunSpec(workload=args.workload, variants=tuple(variants), device=device.type,
                   batch_size=args.batch_size, seed=args.seed, threads=args.threads,
                   data_dir=str(args.data_dir), dataset=args.dataset, limit=args.limit, tools=tools,
                   profile_rounds=args.profile_rounds, profile_steps=args.profile_steps,
                   trace_steps=args.trace_steps,
                   counters=not args.no_counters, memory_snapshot=args.memory_snapshot)
    log.info("Measuring %s: %s (%d rounds x %d step(s), interleaved)", args.workload,
             ", ".join(variants), plan.rounds, plan.steps)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from bench.staging import out_lock, publish, remove_stale, staging

    bars: list = []
    with out_lock(args.out), logging_redirect_tqdm(), staging(args.out) as stage:
        try:
            result = run(spec, plan, variants, stage, progress=_progress(not args.no_progress, bars))
        except NothingMeasured as exc:
            raise UsageError(f"{exc} (nothing was written into {args.out})") from None
        finally:
            for bar in bars:
                bar.close()
        try:
            written = _render_into(result, stage)
            previous = _previous_artifacts(args.out / "run.json")
            moved = publish(stage, args.out)
        except OSError as exc:
            raise UsageError(f"cannot write the reports into {args.out} ({exc.strerror or exc}); "
                             "free some space or pass another --out (the earlier reports there "
                             "were left as they were)") from None
        remove_stale(args.out, previous, [p for paths in result.artifacts.values() for p in paths])
    return _finish(result, args.out, len(moved or written))


def _previous_artifacts(run_json: Path) -> list[str]:
    """The profiler files an earlier run in the same folder wrote (none if there is no readable run)."""
    from bench.measure.result import Result, ResultError

    try:
        return [p for paths in Result.load(run_json).artifacts.values() for p in paths]
    except ResultError:
        return []


def _render_into(result, folder: Path) -> list[Path]:  # result: Result
    from bench.render import render_all

    return [result.save(folder / "run.json"), *render_all(result, folder)]


def _finish(result, out: Path, files: int) -> int:
    from bench.render.terminal import text

    print(f"\n{text(result)}")
    print(f"\nWrote {files} files into {out}/ (start with {out}/summary.md; raw samples: {out}/run.json)")
    profiled = next(iter(result.profiles), None)
    if profiled:
        print(OPEN_HINTS.format(out=out, v=profiled))
    failed = {v: why for v, why in result.reasons.items() if result.status.get(v) == "failed"}
    if failed:
        name, why = next(iter(failed.items()))
        more = f" (and {len(failed) - 1} more; see {out}/summary.md)" if len(failed) > 1 else ""
        kept = "what it measured before, and the other variants' results, were written" \
            if result.rounds.get(name) else "the other variants' results were written"
        print(f"python -m bench profile: error: variant {name!r} failed: {why}{more}; {kept}",
              file=sys.stderr)
        return 2
    return 0


OPEN_HINTS = """Open them with:
  snakeviz {out}/{v}.prof                  # cProfile, one file (or the folder: snakeviz {out})
  python -m line_profiler {out}/{v}.lprof  # line by line
  tensorboard --logdir {out}/tb            # PyTorch Profiler tab (also: ui.perfetto.dev)"""


def run_report(args: argparse.Namespace) -> int:
    from bench.measure.result import Result, ResultError
    from bench.staging import check_writable_dir, publish, staging

    try:
        result = Result.load(args.run)
    except ResultError as exc:
        raise UsageError(str(exc)) from None
    out = args.out or args.run.parent
    try:
        check_writable_dir(out)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from bench.render import render_all
    from bench.render.terminal import text

    with staging(out) as stage:
        written = render_all(result, stage)
        publish(stage, out)
    print(text(result))
    print(f"\nRe-rendered {len(written)} files from {args.run} into {out}/ (nothing was measured)")
    return 0
