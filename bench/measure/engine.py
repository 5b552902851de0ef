"""The engine: builds the variants of one comparison and measures them in interleaved rounds.

One round of a variant = restore its snapshot (model, optimizer, data stream), run
``round_warmup`` unmeasured steps, then time ``steps`` steps with :func:`time_steps`. Each
round visits every variant once, in an order rotated by one every round (A B C, B C A, C A B,
...), so the machine's drift -- 10-30% between minutes on a shared machine -- hits every
variant alike and round ``i`` of A can be paired with round ``i`` of B.

A variant whose builder raises :class:`Unavailable` is skipped with its reason. One whose
build, warm-up or step raises is marked failed -- with the phase it failed in, the exception
and where it came from -- and leaves the later phases; what it measured before is kept, and
the other variants go on. A variant that asks for it (``measure_bound = True``) also gets its
compute-only bound: its step on one batch that never changes, what it would take if its data
cost nothing.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from bench.measure.clock import NO_BATCH, Clock, DataExhausted, Timing, time_steps
from bench.measure.result import Footprint, Measurement
from bench.measure.specs import Plan
from bench.workload import Unavailable, Variants, WorkloadError
from plumbing.devices import synchronize

log = logging.getLogger(__name__)
BOUND_SUFFIX = ":bound"
Wrap = Callable[[], AbstractContextManager[Any]]


def bound_name(variant: str) -> str:
    """The name a variant's compute-only bound is measured and saved under."""
    return f"{variant}{BOUND_SUFFIX}"


def describe_exception(exc: BaseException) -> str:
    """``TypeError: message (at file.py:12 in step)``: the innermost frame, one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} in {frames[-1].name})" \
        if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def describe_failure(exc: BaseException, phase: str, batches_per_epoch: int | None = None) -> str:
    """One line: what went wrong in ``phase``; running out of data gets its own explanation."""
    if isinstance(exc, DataExhausted):
        epoch = f" (batches_per_epoch = {batches_per_epoch})" if batches_per_epoch else ""
        return (f"`fetch()` ran out of data after {exc.fetched} batches in {phase}{epoch}; `restore()` "
                "must rewind the data stream (see `rewind()`), and `batches_per_epoch` must not "
                "exceed what one pass yields")
    return f"{phase} raised {describe_exception(exc)}"


@dataclass
class Engine:
    """The variants of one comparison, built, warmed up and snapshotted, ready for rounds."""

    variants: Variants
    plan: Plan
    clock: Clock = time.perf_counter
    works: dict[str, Any] = field(default_factory=dict)  # measured names -> workload
    snapshots: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # name -> the phase and what went wrong
    info: dict[str, Measurement] = field(default_factory=dict)  # per variant: parts, sizes, footprint
    bounds: dict[str, str] = field(default_factory=dict)  # bound name -> its variant
    _bound_batches: dict[str, Any] = field(default_factory=dict)

    def prepare(self) -> None:
        """Build, warm up and snapshot every variant; each bound's batch is fetched once here."""
        for name in self.variants:
            start = self.clock()
            try:
                work = self.variants.build(name)
            except Unavailable as exc:
                self.skipped[name] = str(exc)
                log.info("%s: skipped: %s", name, exc)
                continue
            except WorkloadError as exc:
                self.fail(name, str(exc))
                continue
            built = self.clock()
            done = 0  # warm-up steps finished (batches fetched)
            try:
                # The first step alone: where a compiler or a capture spends its one-off time.
                first = time_steps(work, 1, clock=self.clock).seconds
                done = 1
                warm = time_steps(work, self.plan.warmup - 1, clock=self.clock) \
                    if self.plan.warmup > 1 else None
                done = max(self.plan.warmup, 1)
                footprint = self._footprint(work) if self.plan.footprint else Footprint()
                self.snapshots[name] = work.state()
            except DataExhausted as exc:
                exc.fetched += done
                self.fail(name, describe_failure(exc, "the warm-up"))
                continue
            except Exception as exc:
                self.fail(name, describe_failure(exc, "the warm-up"))
                continue
            self.works[name] = work
            self.info[name] = describe_work(name, work, self.plan, footprint, build_s=built - start,
                                            first_step_s=first,
                                            warm_step_s=warm.per_step if warm is not None else first)
        if self.plan.bound:
            for name in [n for n, w in self.works.items() if getattr(w, "measure_bound", False)]:
                self._prepare_bound(name)

    def _footprint(self, work: Any) -> Footprint:
        """One step's FLOPs, then one step's peak of live bytes and where they go (two more
        warm-up steps, before the snapshot): the memory profiler runs over both, the first
        priming it. A workload whose step the counters cannot follow keeps its timings."""
        from bench.measure.footprint import flops_of, process_memory
        from bench.measure.memory import StepMemory

        out = Footprint(max_rss_mb=None)
        memory = StepMemory(work.device, roots=[work])  # this variant's tensors, not those built beside it
        memory.start()
        try:
            try:
                out.flops_per_step = flops_of(lambda: time_steps(work, 1))
            except DataExhausted:
                raise
            except Exception as exc:
                out.flops_error = describe_exception(exc)
            memory.between()
            try:
                time_steps(work, 1)
                memory.end()
            except DataExhausted:
                raise
            except Exception as exc:
                out.breakdown_error = describe_exception(exc)
        finally:
            out.breakdown = memory.stop()
        out.breakdown_error = out.breakdown_error or memory.error
        out.max_rss_mb, out.cuda_peak_mb = process_memory()
        return out

    def _prepare_bound(self, name: str) -> None:
        work = self.works[name]
        try:
            work.restore(self.snapshots[name])
            batch = work.fetch()
            synchronize(work.device)
        except StopIteration:
            self.fail(name, describe_failure(DataExhausted(0), "fetching the compute-only bound's batch"))
            return
        except Exception as exc:
            self.fail(name, describe_failure(exc, "fetching the compute-only bound's batch"))
            return
        self.bounds[bound_name(name)] = name
        self._bound_batches[name] = batch
        self.info[bound_name(name)] = replace(self.info[name], name=bound_name(name), bound_of=name,
                                              reference=None)

    def fail(self, name: str, message: str) -> None:
        self.failed[name] = message
        self.works.pop(name, None)
        log.error("variant %r failed: %s", name, message)

    @property
    def measured(self) -> list[str]:
        """The names that take part in rounds: the variants left, then their bounds."""
        return [*self.works, *(b for b, v in self.bounds.items() if v in self.works)]

    def target(self, name: str) -> str:
        """The variant a measured name runs: itself, or the variant of a bound."""
        return self.bounds.get(name, name)

    def run_round(self, name: str, steps: int, *, wrap: Wrap = nullcontext,
                  on_step: Callable[[], None] | None = None, epoch: bool = False) -> Timing:
        """Restore ``name`` and time ``steps`` steps; ``wrap`` surrounds warm-up and timed steps.

        ``epoch``: the workload is restored again after its warm-up, so the timed steps are the
        first ``steps`` batches of a data pass (a full epoch needs exactly batches_per_epoch).
        """
        target = self.target(name)
        work = self.works[target]
        batch = self._bound_batches[target] if name in self.bounds else NO_BATCH
        steps = max(steps, int(getattr(work, "min_round_steps", 1)))
        warmup = max(self.plan.round_warmup, int(getattr(work, "min_round_warmup", 0)))
        work.restore(self.snapshots[target])
        with wrap():
            if warmup:
                time_steps(work, warmup, batch=batch)
            if epoch:
                work.restore(self.snapshots[target])
                warmup = 0
            try:
                return time_steps(work, steps, batch=batch, clock=self.clock, on_step=on_step)
            except DataExhausted as exc:
                exc.fetched += warmup if batch is NO_BATCH else 0
                raise

    def try_round(self, name: str, steps: int, phase: str, **kw: Any) -> Timing | None:
        """:meth:`run_round`, turning an exception into a failed variant (None)."""
        try:
            return self.run_round(name, steps, **kw)
        except Exception as exc:
            target = self.target(name)
            info = self.info.get(target)
            self.fail(target, describe_failure(exc, phase, info.batches_per_epoch
                                               if info is not None and kw.get("epoch") else None))
            return None

    def interleaved(self, on_step: Callable[[], None] | None = None
                    ) -> tuple[dict[str, list[Timing]], list[list[str]]]:
        """``plan.rounds`` rounds over every variant, rotated; (timings per name, order per round).

        A variant that fails in round ``r`` keeps the rounds it measured before it."""
        timings: dict[str, list[Timing]] = {name: [] for name in self.measured}
        orders: list[list[str]] = []
        for r in range(self.plan.rounds):
            # A variant with longer rounds (min_round_steps) joins every k-th round only, so that
            # every variant gets about the same number of timed steps; pairs are matched by round.
            names = [n for n in self.measured if r % self.every(n) == 0]
            k = r % len(names) if names else 0
            order = names[k:] + names[:k]
            orders.append(order)
            for name in order:
                if name not in self.measured:  # failed earlier in this round
                    continue
                timing = self.try_round(name, self.plan.steps, f"round {r + 1} of the interleaved rounds",
                                        on_step=on_step)
                if timing is not None:
                    timing.round = r
                    timings[name].append(timing)
        return {n: t for n, t in timings.items() if t}, orders

    def every(self, name: str) -> int:
        """How often ``name`` joins a round: every k-th, k = its round's steps / plan.steps."""
        work = self.works.get(self.target(name))
        return max(1, int(getattr(work, "min_round_steps", 1)) // self.plan.steps)

    def epoch_names(self) -> list[str]:
        """The first and last variant, and those that ask for it (``measure_epoch``)."""
        names = list(self.works)
        asked = self.plan.epoch_variants or tuple(dict.fromkeys(
            [*names[:1], *[n for n in names if getattr(self.works[n], "measure_epoch", False)],
             *names[-1:]]))
        return [n for n in asked if n in self.works and self.info[n].batches_per_epoch]

    def epochs(self, on_step: Callable[[], None] | None = None) -> dict[str, list[Timing]]:
        """Full epochs end to end (``batches_per_epoch`` steps after a restore), alternating the
        variants."""
        names = self.epoch_names()
        out: dict[str, list[Timing]] = {n: [] for n in names}
        for r in range(self.plan.epochs):
            for name in names if r % 2 == 0 else names[::-1]:
                if name in self.works:
                    timing = self.try_round(name, int(self.info[name].batches_per_epoch or 0),
                                            "the full epoch", on_step=on_step, epoch=True)
                    if timing is not None:
                        out[name].append(timing)
        return {n: t for n, t in out.items() if t}


def describe_work(name: str, work: Any, plan: Plan, footprint: Footprint, **timings: float) -> Measurement:
    """A built variant's Measurement, before its samples: what it declares about itself."""
    return Measurement(
        name=name, parts=list(getattr(work, "parts", ())), batch_size=getattr(work, "batch_size", None),
        batches_per_epoch=getattr(work, "batches_per_epoch", None),
        description=work.describe() if hasattr(work, "describe") else "", device=str(work.device),
        reference=getattr(work, "reference", None), notes=dict(getattr(work, "notes", {}) or {}),
        round_steps=max(plan.steps, int(getattr(work, "min_round_steps", 1))),
        sample_unit=getattr(work, "sample_unit", "samples"),
        samples_per_batch=getattr(work, "samples_per_batch", None), footprint=footprint, **timings)
