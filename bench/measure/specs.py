"""What was asked, one frozen spec per kind of run: saved inside every run.json.

A spec is hashable and printable (torch.utils.benchmark's ``TaskSpec`` is the model): the
renderers read what a run was meant to measure from here, and what it did measure from the
Measurements. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.defaults import SETTLE, TOOLS, UNHOOKED

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """How much the engine measures; part of a ``variants`` spec."""

    rounds: int = 200  # interleaved rounds
    steps: int = 1  # timed steps per round: one, so that paired samples are one step apart
    warmup: int = 5  # steps per variant before the first round
    round_warmup: int = 1  # unmeasured steps after each restore
    bound: bool = True  # measure the compute-only bound of the variants that ask for it
    epochs: int = 1  # full epochs timed end to end, per epoch variant (0: none)
    epoch_variants: tuple[str, ...] = ()  # () = the first and the last variant
    footprint: bool = True  # count one step's FLOPs and peak memory per variant

    def __post_init__(self) -> None:
        for name in ("rounds", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup", "round_warmup", "epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VariantsSpec:
    """A ``profile`` run: the workload's variants measured in interleaved rounds."""

    workload: str
    variants: tuple[str, ...]
    device: str
    batch_size: int
    seed: int
    threads: int | None
    data_dir: str
    dataset: str
    limit: int | None
    tools: tuple[str, ...] = TOOLS
    profile_windows: int = 8  # pairs of plain/profiled windows per profiler
    profile_steps: int = 5  # timed steps per profiler window
    trace_steps: int = 10  # active steps of the Kineto trace
    counters: bool = True
    memory_snapshot: bool = False  # CUDA: the allocator's history of a few steps per variant
    plan: Plan = field(default_factory=Plan)
    ordered: bool = False  # the workload's variants are ordered (each vs the one before)
    report: str | None = None  # module:function of the workload's own report section

    kind = "variants"
    samples_are = "rounds"  # what one sample of a Measurement is

    def title(self) -> str:
        return f"Workload `{self.workload}`"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_pairs(pairs: int) -> int:
    """Pairs a block holds for a side measured in windows of steps, for ``pairs`` single-step
    pairs: a fifth as many (a window's mean jitters less than one step), at least 3."""
    return max(3, pairs // 5)


# The profiles key of a switched side's pairs in a Measurement: "switch:fused=True"
SWITCH_PAIRS = "switch:"


@dataclass(frozen=True)
class Duet:
    """``--try``'s switches in one process (:mod:`bench.capture.duet`): after the warm-up and the
    measured window, each switch ``warm`` steps on (its one-off cost: a compile, a first fused
    step), then blocks ``first_block`` .. ``first_block + blocks - 1``, each of ``pairs`` pairs
    of single steps per side -- one step with the side's switch on, one off, in random order
    (seeded by ``seed`` and the block: every rank of a job flips at the same step)."""

    sides: tuple[str, ...]  # as the report names them
    patches: tuple[str, ...]  # per side its patches joined by "+" ("" for the A/A: nothing switched)
    first_block: int = 0
    blocks: int = 6
    pairs: int = 16
    warm: int = 3
    seed: int = 0
    # per side, for a switch measured in windows (a loader's workers): steps left out at each
    # window's start, steps timed after them; () or 0 and 1: single steps
    settle: tuple[int, ...] = ()
    steps: tuple[int, ...] = ()

    def side_patches(self, side: str) -> tuple[str, ...]:
        joined = self.patches[self.sides.index(side)]
        return tuple(joined.split("+")) if joined else ()

    def window(self, side: str) -> tuple[int, int]:
        """(steps left out, steps timed) of each of the side's windows."""
        i = self.sides.index(side)
        return (self.settle[i] if self.settle else 0, self.steps[i] if self.steps else 1)

    def pairs_of(self, side: str) -> int:
        """Pairs a block holds for the side: windows of several steps need fewer (a window's
        mean jitters less than one step), a fifth as many, at least 3."""
        return self.pairs if self.window(side)[1] == 1 else window_pairs(self.pairs)


class Command:
    """A spec that runs a user's command line: ``command`` is ("train.py", *args) or ("-m", ...)."""

    command: tuple[str, ...]

    @property
    def name(self) -> str:
        """The run's name in the report: the script's file name or the module."""
        return self.command[1] if self.command[0] == "-m" else Path(self.command[0]).name

    def shell(self) -> str:
        return "python " + " ".join(self.command)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


# steps of each counted window (memory: a priming step, the one read, the one its profiler stops in)
COUNTED = {"flops": 1, "memory": 3}


@dataclass(frozen=True)
class ScriptSpec(Command):
    """A ``vaebench run`` of an unmodified script: one process, or ranks under torchrun."""

    command: tuple[str, ...]  # ("train.py", *args) or ("-m", "pkg.mod", *args)
    warmup: int = 5
    steps: int = 100  # 0: measure every step until the script ends (no profiler windows)
    step_on: str = "auto"  # auto | optimizer | backward
    tools: tuple[str, ...] = TOOLS
    profile_windows: int = 3  # pairs of (plain, profiled) windows per tool
    profile_steps: int = 3  # steps per profiler window (a Kineto trace needs a handful, not 50)
    wait: float = 30.0  # seconds to wait for the first step before calling it "no training script"
    lines: tuple[str, ...] = ()  # line_profiler's functions: NAME (in the script) or module:function
    # Observing's cost: pairs of windows with the part hooks on and off. Single steps (the finest
    # alternation: drift cancels pair by pair), many pairs (a step jitters by ~7% here): 400
    # pairs put the interval within about +-0.6-1.5% on a 5 ms step, at the price of 800 steps.
    observe_windows: int = 400
    observe_steps: int = 1  # steps per observing window (runs saved before it had profile_steps)
    observe_last: bool = True  # its pairs after the profilers' windows (runs saved before: before them)
    # measured steps before the profilers' windows, the rest after them: a script of ~100 steps
    # still gets every profiler (runs saved before it measured every step first)
    first_measured: int = 30
    # the windows counted rather than timed after the first measured steps (runs saved before the
    # memory breakdown counted only the FLOPs)
    counted: tuple[str, ...] = ("flops", "memory")
    # ranks asked of torchrun on each node (0: the script alone); the ranks measured are the Result's
    nproc: int = 0
    torchrun: str = ""  # torchrun's own options, as given
    patches: tuple[str, ...] = ()  # applied before the script starts (bench.capture.patches)
    seed: int | None = None  # torch, numpy and random seeded before the script starts
    losses: int = 0  # the first N measured losses (what backward() was called on) kept
    plugins: tuple[str, ...] = ()  # modules imported first: a user's own fixes
    duet: Duet | None = None  # --try's switches, measured step against step after the measured window

    kind = "script"
    samples_are = "steps"

    def window_order(self) -> list[str]:
        """What follows the first measured steps (and the counted step), in the order it runs:
        each tool's windows, a settling step, the rest of the measured steps (``measure``), and
        observing's (UNHOOKED) pairs -- observing before the tools in runs saved before
        ``observe_last``."""
        observing = [UNHOOKED] if self.observe_windows else []
        if not self.observe_last:
            return observing + list(self.tools)
        rest = ["measure"] if self.steps > self.first_measured else []
        settle = [SETTLE] if self.tools and (rest or observing) else []
        return list(self.tools) + settle + rest + observing

    def title(self) -> str:
        return f"Script `{self.shell()}`"


@dataclass(frozen=True)
class TrySpec(Command):
    """A ``vaebench run --try``: each fix that can be switched between steps measured in the
    script's own process, step against step, in blocks (the A/A with them); the others in
    separate processes against baseline processes, visited in rotated order; the faster fixes
    together after them, the same way."""

    command: tuple[str, ...]
    warmup: int = 5
    steps: int = 30  # measured steps per process (processes' fixes): its median is one sample
    repeats: int = 5  # processes per side (processes' fixes)
    blocks: int = 6  # in-process: independent blocks, the interval taken across them
    pairs: int = 16  # in-process: pairs of single steps (on, off) per side per block
    switch_warm: int = 3  # in-process: steps with each switch on before the pairs (its one-off cost)
    switched: tuple[str, ...] = ()  # the fixes measured in-process (the others in processes)
    seed: int | None = 0
    losses: int = 10  # measured losses compared per process
    tolerance: float = 0.05  # relative loss difference still "within" (beyond the baseline's own)
    wait: float = 30.0
    asked: tuple[str, ...] | None = None  # --fixes: the catalogue entries named (None: every default one)
    fixes: tuple[str, ...] = ()  # the fixes measured, in order
    skipped: tuple[str, ...] = ()  # "entry: why" for each catalogue entry not tried
    combination: tuple[str, ...] = ()  # the fixes measured together in the second phase
    plugins: tuple[str, ...] = ()
    max_minutes: float | None = None
    nproc: int = 0  # ranks under torchrun per process (0: the script alone); rank 0's steps are the sample
    torchrun: str = ""  # torchrun's own options, as given
    versus: tuple[str, ...] = ()  # run --compare: B's command line, against A (``command``)

    kind = "try"
    samples_are = "processes"

    def title(self) -> str:
        if self.versus:
            return f"`python {' '.join(self.versus)}` (B) against `{self.shell()}` (A)"
        return f"What the usual fixes buy on `{self.shell()}`"


@dataclass(frozen=True)
class FitSpec(Command):
    """A ``vaebench run --fit``: the step's memory at the script's batch size and at larger ones
    (its DataLoaders' ``batch_size`` patched), a process each, and the largest batch that fits."""

    command: tuple[str, ...]
    warmup: int = 3
    steps: int = 3  # measured steps a process (after its memory window, which follows the warm-up)
    factors: tuple[int, ...] = (2, 4)  # the sizes after the script's own: x2 for the line, x4 to check it
    fixes: tuple[str, ...] = ()  # catalogue entries at the script's batch and x2: the batch each lets through
    seed: int | None = 0
    wait: float = 30.0
    plugins: tuple[str, ...] = ()

    kind = "fit"
    samples_are = "steps"

    def title(self) -> str:
        return f"What batch fits `{self.shell()}`"


Spec = VariantsSpec | ScriptSpec | TrySpec | FitSpec
SPECS: dict[str, type[VariantsSpec] | type[ScriptSpec] | type[TrySpec] | type[FitSpec]] = {
    "variants": VariantsSpec, "script": ScriptSpec, "try": TrySpec, "fit": FitSpec}


def build(cls: type[T], doc: dict[str, Any]) -> T:
    """A frozen dataclass from its dict: lists become the tuples the fields declare, a nested
    Plan is built, unknown keys are refused (a typo in a hand-edited file says so)."""
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(doc) - set(known))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} in a {cls.__name__}")
    values: dict[str, Any] = {}
    for name, value in doc.items():
        if name == "plan" and isinstance(value, dict):
            value = build(Plan, value)
        elif name == "duet" and isinstance(value, dict):
            value = build(Duet, value)
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)
