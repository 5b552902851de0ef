"""The engine: builds the variants of one comparison and measures them in interleaved rounds.

One round of a variant = restore its snapshot (model, optimizer, data stream), run
``round_warmup`` unmeasured steps, then time ``steps`` steps with :func:`time_steps`. Each
round visits every variant once, in an order rotated by one every round (A B C, B C A, C A B,
...), so the machine's drift -- 10-30% between minutes on a shared machine -- hits every
variant alike and round ``i`` of A can be paired with round ``i`` of B.

A variant whose builder raises :class:`Unavailable` is skipped with its reason; one whose
build, warm-up or step raises is marked failed (with the exception and where it came from)
and dropped, and the others go on. The compute-only bound is the last variant's step on one
batch that never changes: what that variant would take if its data cost nothing.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.measure.clock import NO_BATCH, Clock, Timing, synchronize, time_steps
from bench.workload import Unavailable, Variants, WorkloadError

log = logging.getLogger(__name__)
BOUND = "compute-bound"
Wrap = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class Plan:
    """How much to measure; saved in every result."""

    rounds: int = 200  # interleaved rounds
    steps: int = 1  # timed steps per round: one, so that paired samples are one step apart
    warmup: int = 5  # steps per variant before the first round
    round_warmup: int = 1  # unmeasured steps after each restore
    bound: bool = True  # also measure the compute-only bound of the last variant
    epochs: int = 1  # full epochs timed end to end, per epoch variant (0: none)
    epoch_variants: tuple[str, ...] = ()  # () = the first and the last variant

    def __post_init__(self) -> None:
        for name in ("rounds", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup", "round_warmup", "epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_exception(exc: BaseException) -> str:
    """``TypeError: message (at file.py:12 in step)``: the innermost frame, one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} in {frames[-1].name})" \
        if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


@dataclass
class Session:
    """The variants of one comparison, built, warmed up and snapshotted, ready for rounds."""

    variants: Variants
    plan: Plan
    clock: Clock = time.perf_counter
    works: dict[str, Any] = field(default_factory=dict)  # measured names -> workload
    snapshots: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)  # per variant: parts, sizes, data
    bound_of: str | None = None
    _bound_batch: Any = NO_BATCH

    def prepare(self) -> None:
        """Build, warm up and snapshot every variant; the bound's batch is fetched once here."""
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
            try:
                # The first step alone: where a compiler or a capture spends its one-off time.
                first = time_steps(work, 1, clock=self.clock).seconds
                if self.plan.warmup > 1:
                    time_steps(work, self.plan.warmup - 1)
                self.snapshots[name] = work.state()
            except Exception as exc:
                self.fail(name, f"warm-up raised {describe_exception(exc)}")
                continue
            self.works[name] = work
            self.info[name] = {
                "parts": list(getattr(work, "parts", ())), "batch_size": getattr(work, "batch_size", None),
                "batches_per_epoch": getattr(work, "batches_per_epoch", None),
                "data": work.describe() if hasattr(work, "describe") else "",
                "device": str(work.device), "build_s": built - start, "first_step_s": first,
                "reference": getattr(work, "reference", None), "notes": getattr(work, "notes", {}),
                "round_steps": max(self.plan.steps, int(getattr(work, "min_round_steps", 1))),
            }
        if self.plan.bound and self.works:
            self.bound_of = list(self.works)[-1]
            work = self.works[self.bound_of]
            work.restore(self.snapshots[self.bound_of])
            self._bound_batch = work.fetch()
            synchronize(work.device)
            self.info[BOUND] = {**self.info[self.bound_of], "bound_of": self.bound_of}

    def fail(self, name: str, message: str) -> None:
        self.failed[name] = message
        self.works.pop(name, None)
        log.error("variant %r failed: %s", name, message)
        if name == self.bound_of:
            self.bound_of = None

    @property
    def measured(self) -> list[str]:
        """The names that take part in rounds: the variants left, then the bound."""
        return [*self.works, *([BOUND] if self.bound_of in self.works else [])]

    def run_round(self, name: str, steps: int, *, wrap: Wrap = nullcontext,
                  on_step: Callable[[], None] | None = None) -> Timing:
        """Restore ``name`` and time ``steps`` steps; ``wrap`` surrounds warm-up and timed steps."""
        target = self.bound_of if name == BOUND else name
        assert target is not None
        work = self.works[target]
        batch = self._bound_batch if name == BOUND else NO_BATCH
        steps = max(steps, int(getattr(work, "min_round_steps", 1)))
        warmup = max(self.plan.round_warmup, int(getattr(work, "min_round_warmup", 0)))
        work.restore(self.snapshots[target])
        with wrap():
            if warmup:
                time_steps(work, warmup, batch=batch)
            return time_steps(work, steps, batch=batch, clock=self.clock, on_step=on_step)

    def try_round(self, name: str, steps: int, **kw: Any) -> Timing | None:
        """:meth:`run_round`, turning an exception into a failed variant (None)."""
        try:
            return self.run_round(name, steps, **kw)
        except Exception as exc:
            target = self.bound_of if name == BOUND else name
            self.fail(target or name, f"step raised {describe_exception(exc)}")
            return None

    def interleaved(self, on_step: Callable[[], None] | None = None
                    ) -> tuple[dict[str, list[Timing]], list[list[str]]]:
        """``plan.rounds`` rounds over every variant, rotated; (timings per name, order per round)."""
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
                timing = self.try_round(name, self.plan.steps, on_step=on_step)
                if timing is not None:
                    timing.round = r
                    timings[name].append(timing)
        alive = set(self.measured)
        return {n: t for n, t in timings.items() if n in alive}, orders

    def every(self, name: str) -> int:
        """How often ``name`` joins a round: every k-th, k = its round's steps / plan.steps."""
        target = self.bound_of if name == BOUND else name
        work = self.works.get(target) if target else None
        return max(1, int(getattr(work, "min_round_steps", 1)) // self.plan.steps)

    def epoch_names(self) -> list[str]:
        """The first and last variant, and those that ask for it (``measure_epoch``)."""
        names = list(self.works)
        asked = self.plan.epoch_variants or tuple(dict.fromkeys(
            [*names[:1], *[n for n in names if getattr(self.works[n], "measure_epoch", False)],
             *names[-1:]]))
        return [n for n in asked if n in self.works and self.info[n].get("batches_per_epoch")]

    def epochs(self, on_step: Callable[[], None] | None = None) -> dict[str, list[Timing]]:
        """Full epochs end to end (``batches_per_epoch`` steps), alternating the variants."""
        names = self.epoch_names()
        out: dict[str, list[Timing]] = {n: [] for n in names}
        for r in range(self.plan.epochs):
            for name in names if r % 2 == 0 else names[::-1]:
                if name in self.works:
                    timing = self.try_round(name, int(self.info[name]["batches_per_epoch"]),
                                            on_step=on_step)
                    if timing is not None:
                        out[name].append(timing)
        return {n: t for n, t in out.items() if n in self.works}

