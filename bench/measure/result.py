"""One run's result: its kind, what was asked, on which machine, and one Measurement per variant
or rank holding every raw sample -- saved as run.json.

Nothing derived is stored: medians, ratios, intervals and verdicts are computed from the raw
samples by :mod:`bench.measure.derive` (once per Result, cached on it) whenever a renderer
asks, so a saved run can be re-rendered, compared and checked later. Saving and loading is
lossless (tested per kind); a run.json of the previous format is converted on load
(:mod:`bench.measure.legacy`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.measure.clock import Timing
from bench.measure.environment import Environment
from bench.measure.specs import SPECS, Spec, build
from plumbing.files import write_atomic

SCHEMA = "vaebench.run/3"
KINDS = tuple(SPECS)  # variants | script | try | fit


class ResultError(ValueError):
    """A run.json is missing or not one; the message names the file and the fix."""


@dataclass
class ToolTiming:
    """A profiler's windows and the plain windows alternated with them (its overhead's samples)."""

    plain: list[Timing]
    tool: list[Timing]

    def as_dict(self) -> dict[str, Any]:
        return {"plain": [t.as_dict() for t in self.plain], "tool": [t.as_dict() for t in self.tool]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ToolTiming:
        return cls([Timing.from_dict(t) for t in d["plain"]], [Timing.from_dict(t) for t in d["tool"]])


@dataclass
class Breakdown:
    """The live tensor bytes at a step's peak by part (:data:`bench.measure.memory.MEMORY_PARTS`),
    summing to ``peak`` (:mod:`bench.measure.memory`)."""

    device: str = "cpu"
    peak: int = 0
    parts: dict[str, int] = field(default_factory=dict)
    rise: int | None = None  # the peak above what lived when the step started (CUDA: the allocator's own)
    at: str = ""  # where in the step the peak fell: data | forward | backward | optimizer | "" (between)
    saved_max: int = 0  # the most bytes saved for backward live at once
    cuda: dict[str, float] = field(default_factory=dict)  # the allocator's: max allocated/reserved, capacity
    curve: list[float] = field(default_factory=list)  # live MB through the step above what stays through it
    floor: int = 0  # bytes live through the whole step (parameters, optimizer state, a data set)
    caveat: str = ""  # what limits it: activations not told apart, a replay the allocator disagrees with
    phases: list[tuple[int, int, str]] = field(default_factory=list)  # forward, backward, optimizer on it


@dataclass
class OutOfMemory:
    """The script ran out of memory (:mod:`bench.capture.oom`)."""

    device: str = "cpu"
    step: int = 0  # the step it failed in
    line: str = ""  # the script's line that asked: train.py:42
    code: str = ""  # that line's code
    phase: str = ""  # data | forward | backward | optimizer | "" (outside them)
    asked: int | None = None  # bytes the failing allocation asked for (from the allocator's message)
    live: dict[str, int] = field(default_factory=dict)  # by part, found through the objects at the failure
    message: str = ""
    largest: list[str] = field(default_factory=list)  # the largest tensors alive that are no parameter
    batch: int | None = None  # the failing step's batch (its latest input's first dimension)
    before: dict[str, int] = field(default_factory=dict)  # the same parts at the memory window step's start
    snapshot: str = ""  # CUDA: the allocator's history, for PyTorch's memory viewer


@dataclass
class Footprint:
    """What one step costs besides time (None: not measured; the error says why)."""

    flops_per_step: float | None = None  # FlopCounterMode over one whole step
    flops_error: str = ""
    max_rss_mb: float | None = None  # the process's max resident set
    cuda_peak_mb: float | None = None  # CUDA: the allocator's max allocated over the whole process
    breakdown: Breakdown | None = None  # where the memory goes at the step's peak
    breakdown_error: str = ""


@dataclass
class Built:
    """Something a script built: a DataLoader, an optimizer, its outermost model."""

    kind: str  # DataLoader | optimizer | model
    type: str  # its class
    where: str  # file.py:line of the script's call ("" where not seen)
    options: dict[str, Any] = field(default_factory=dict)  # as the object holds them, JSON-safe


@dataclass
class Process:
    """How an observed script's process (one rank) ran: only in ``script`` results."""

    rank: int | None = None  # the global rank under torchrun (None: the script ran alone)
    local_rank: int | None = None  # its rank on its node
    node: str = ""  # the host it ran on
    node_rank: int = 0  # torchrun's GROUP_RANK: which node of the job
    world_size: int = 1  # ranks in the job, every node's
    step_rule: str = ""  # optimizer | backward: what ended a step
    steps_seen: int = 0
    warmup: int = 0
    pid: int = 0
    allreduce_ms: float | None = None  # DDP's own sampled timing of its gradient all-reduce
    allreduce_overlap_ms: float | None = None
    allreduce_sampled_iterations: float | None = None
    stopped: bool = False  # vaebench stopped it once its windows were complete
    exit_code: int | None = None  # the script's own
    error: str = ""  # the script's exception, one line
    interrupted: bool = False  # Ctrl-C
    oom: OutOfMemory | None = None  # it ran out of memory: explained
    no_step: bool = False  # no step seen in --wait seconds
    waited: str = ""  # with no_step: what the wait saw (forwards, backwards, inside optimizer.step())
    micro_batches: int = 1  # batches per optimizer step: above 1, gradients accumulated over them
    step_batches: int = 1  # batches per step: a WGAN's critic steps five times on five
    # a step's optimizer steps where it steps several a round (a GAN's two): "`Adam` at gan.py:70"
    step_round: list[str] = field(default_factory=list)
    built: list[Built] = field(default_factory=list)  # what the script built, where
    losses: list[float | None] = field(default_factory=list)  # the first measured losses (None: inf/NaN)
    threads: int | None = None  # torch's intra-op threads at the script's end
    warmup_s: float | None = None  # from the script's start to the end of its warm-up steps
    observe_pairs: int | None = None  # observing's pairs kept (spec.observe_windows, or fewer to fit 10 s)
    # Under torchrun: the measured steps on the host's wall clock (bench.ranks.timeline), which
    # the ranks' view aligns on the collectives' ends; empty for one process or on CUDA.
    timeline: dict[str, Any] = field(default_factory=dict)


@dataclass
class Measurement:
    """Everything measured of one variant, one compute-only bound or one rank: raw samples only.

    ``samples`` holds the timed samples: for ``variants`` one Timing per interleaved round (its
    ``round`` pairs it with the other variants'), for ``script`` one Timing per step (``round``
    is the step's index, which pairs the ranks).
    """

    name: str
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""  # why skipped or failed
    samples: list[Timing] = field(default_factory=list)
    epochs: list[Timing] = field(default_factory=list)  # full epochs end to end
    profiles: dict[str, ToolTiming] = field(default_factory=dict)  # tool -> its windows
    counters: dict[str, float] = field(default_factory=dict)  # exact per-step counts
    artifacts: list[str] = field(default_factory=list)  # paths relative to run.json
    parts: list[str] = field(default_factory=list)  # the parts it declares, in order
    description: str = ""
    device: str = "cpu"
    batch_size: int | None = None
    batches_per_epoch: int | None = None
    samples_per_batch: float | None = None
    sample_unit: str = "samples"
    reference: str | None = None  # the variant it changes one thing of
    bound_of: str | None = None  # a compute-only bound: the variant it bounds
    build_s: float | None = None
    first_step_s: float | None = None  # the first step alone: compile, capture, start-up
    warm_step_s: float | None = None
    round_steps: int = 1
    notes: dict[str, Any] = field(default_factory=dict)  # the workload's own notes
    footprint: Footprint = field(default_factory=Footprint)
    process: Process | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(samples=[t.as_dict() for t in self.samples], epochs=[t.as_dict() for t in self.epochs],
                 profiles={k: v.as_dict() for k, v in self.profiles.items()},
                 footprint=asdict(self.footprint), process=asdict(self.process) if self.process else None)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        d = dict(d)
        d["samples"] = [Timing.from_dict(t) for t in d.get("samples", [])]
        d["epochs"] = [Timing.from_dict(t) for t in d.get("epochs", [])]
        d["profiles"] = {k: ToolTiming.from_dict(v) for k, v in d.get("profiles", {}).items()}
        footprint = dict(d.get("footprint") or {})
        if footprint.get("breakdown"):
            found = dict(footprint["breakdown"])
            found["phases"] = [tuple(p) for p in found.get("phases", [])]
            footprint["breakdown"] = Breakdown(**found)
        d["footprint"] = Footprint(**footprint)
        if d.get("process"):
            process = dict(d["process"])
            process["built"] = [Built(**b) for b in process.get("built", [])]
            if process.get("oom"):
                process["oom"] = OutOfMemory(**process["oom"])
            d["process"] = Process(**process)
        else:
            d["process"] = None
        return cls(**d)


@dataclass
class Result:
    kind: str  # one of KINDS: which spec, and which sections every renderer shows
    spec: Spec
    machine: Environment
    measurements: list[Measurement]  # in the order asked; compute-only bounds after their variants
    orders: list[list[str]] = field(default_factory=list)  # the order of each interleaved round
    peak: dict[str, Any] = field(default_factory=dict)  # the machine's peak FLOP/s and its source
    partial: dict[str, str] = field(default_factory=dict)  # "name/stage" -> why that stage failed
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    duration_s: float | None = None  # from the start to the end of the measurements
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)  # derived figures

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}: one of {', '.join(KINDS)}")

    def __getitem__(self, name: str) -> Measurement:
        for m in self.measurements:
            if m.name == name:
                return m
        raise KeyError(name)

    def get(self, name: str) -> Measurement | None:
        return next((m for m in self.measurements if m.name == name), None)

    @property
    def names(self) -> list[str]:
        """Every variant or rank asked for (bounds excluded), in order."""
        return [m.name for m in self.measurements if m.bound_of is None]

    @property
    def measured(self) -> list[str]:
        """The variants or ranks with samples, in the order asked (one that failed in a later
        phase keeps the samples it measured before)."""
        return [m.name for m in self.measurements
                if m.bound_of is None and m.status in ("ok", "failed") and m.samples]

    @property
    def baseline(self) -> str | None:
        return self.measured[0] if self.measured else None

    def bound_of(self, variant: str) -> str | None:
        """The name of ``variant``'s compute-only bound (None: none measured)."""
        return next((m.name for m in self.measurements if m.bound_of == variant and m.samples), None)

    @property
    def ordered(self) -> bool:
        return bool(getattr(self.spec, "ordered", False))

    @property
    def artifacts(self) -> list[str]:
        return [p for m in self.measurements for p in m.artifacts]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "kind": self.kind, "created": self.created, "spec": self.spec.as_dict(),
                "machine": self.machine.as_dict(), "measurements": [m.as_dict() for m in self.measurements],
                "orders": self.orders, "peak": self.peak, "partial": self.partial,
                "duration_s": self.duration_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        kind = d["kind"]
        if kind not in SPECS:
            raise ValueError(f"unknown kind {kind!r}")
        return cls(kind=kind, spec=build(SPECS[kind], d["spec"]),
                   machine=Environment.from_dict(d["machine"]),
                   measurements=[Measurement.from_dict(m) for m in d["measurements"]],
                   orders=[list(o) for o in d.get("orders", [])], peak=dict(d.get("peak") or {}),
                   partial=dict(d.get("partial") or {}), created=d["created"], duration_s=d.get("duration_s"))

    def save(self, path: Path) -> Path:
        """Write atomically: a reader never sees half a file."""
        return write_atomic(path, json.dumps(self.to_dict(), indent=1, allow_nan=False))

    @classmethod
    def load(cls, path: Path) -> Result:
        if not path.is_file():
            raise ResultError(f"{path}: no such file; `python -m bench profile` writes reports/run.json")
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ResultError(f"{path}: not JSON ({exc}); re-run `python -m bench profile`") from None
        schema = doc.get("schema") if isinstance(doc, dict) else None
        from bench.measure import legacy

        if schema != SCHEMA and schema not in legacy.CONVERTS:
            raise ResultError(f"{path}: not a vaebench run (schema {SCHEMA!r} expected, found "
                              f"{schema!r}); pytest-benchmark files go to `python -m bench compare`")
        try:
            result = cls.from_dict(legacy.upgrade(doc, schema))
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultError(f"{path}: a vaebench run with a broken field ({type(exc).__name__}: "
                              f"{exc}); re-run `python -m bench profile`") from None
        bad = [m.name for m in result.measurements for t in m.samples
               if not (math.isfinite(t.seconds) and t.seconds > 0)]
        if bad:
            raise ResultError(f"{path}: variant {bad[0]!r} has a non-positive or non-finite time; "
                              "the file was edited or damaged")
        return result
