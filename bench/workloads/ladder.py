"""The built-in workload: the course VAE on MNIST, one variant per rung of the data ladder, and
a second axis of variants that make the step itself cheaper.

A variant is named ``RUNG[+STEP]``:

- ``RUNG``: a pipeline of the ladder (``naive``, ``tensor``, ``batched``, ``pinned``,
  ``resident``/``optimized``), or a DataLoader rung with the DataLoader's own options:
  ``naive-w2`` (``num_workers=2``, persistent workers), ``naive-pin`` (``pin_memory=True``,
  CUDA only); ``tensor-w2``, ``tensor-pin`` likewise.
- ``STEP``: ``foreach`` or ``fused`` (Adam's multi-tensor / fused implementations),
  ``compile`` (``torch.compile`` of the model), ``compile-step`` (forward+loss and the update
  compiled), ``cudagraphs`` (the same captured as CUDA graphs; CUDA only).

Groups name several at once: ``ladder`` (the five rungs), ``default`` (the rungs, ``naive`` with
1, 2, 4, ... workers up to the machine's cores, ``naive-pin``, and ``resident`` with ``foreach``
and ``fused``), ``compile`` (``resident`` compiled and captured: slow to build) and ``all``.
The measuring code knows this module only by its factory name, as it knows a user's. What is
the VAE's own lives here: its variants form a ladder (``make.ordered``), the last one asked for
also has its compute-only bound measured, and :func:`report_sections` adds the VAE's target
(the optimized rung within 5% of its bound), Dynamo's graph breaks and the rung x step table.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from bench.workload import Context, ModelWorkload, Unavailable, WorkloadError
from vae.data import DATASETS, DataError, MnistSplit, load_mnist
from vae.model import VAE
from vae.pipelines import LADDER, PIPELINES, Pipeline, make_pipeline
from vae.speedups import graph_breaks, make_optimizer, step_functions
from vae.train import train_step

PARTS = ("data", "forward", "backward", "optimizer")
STEPS: dict[str, dict[str, str]] = {
    "foreach": {"impl": "foreach"}, "fused": {"impl": "fused"},
    "compile": {"compile": "model"}, "compile-step": {"compile": "step"},
    "cudagraphs": {"compile": "cudagraphs"},
}
_RUNG = re.compile(r"^(?P<pipeline>[a-z]+)(?:-w(?P<workers>\d+)|-(?P<pin>pin))?$")


@dataclass(frozen=True)
class VariantSpec:
    """What a variant name means."""

    pipeline: str
    num_workers: int = 0
    pin_memory: bool = False
    impl: str = "default"
    compile: str = "none"


def parse(name: str) -> VariantSpec:
    rung, _, step = name.partition("+")
    match = _RUNG.match(rung)
    if not match or match["pipeline"] not in PIPELINES:
        raise WorkloadError(f"--variants: unknown variant {name!r}: a rung ({', '.join(PIPELINES)}, "
                            "or naive-w2 / naive-pin style) optionally followed by +STEP "
                            f"({', '.join(STEPS)}); or a group: {', '.join(GROUPS)}")
    workers, pin = int(match["workers"] or 0), bool(match["pin"])
    if (workers or pin) and not PIPELINES[match["pipeline"]].uses_dataloader:
        raise WorkloadError(f"--variants {name!r}: workers and pinned memory are DataLoader options; "
                            "only naive and tensor use a DataLoader")
    if step and step not in STEPS:
        raise WorkloadError(f"--variants {name!r}: unknown step variant {step!r}: choose from "
                            f"{', '.join(STEPS)}")
    return VariantSpec(match["pipeline"], workers, pin, **STEPS.get(step, {}))


def reference_of(name: str) -> str | None:
    """What a variant is compared with to say whether its one change pays off."""
    rung, _, step = name.partition("+")
    if step:
        return rung
    match = _RUNG.match(rung)
    if match and (match["workers"] or match["pin"]):
        return match["pipeline"]
    return None


def worker_counts() -> list[int]:
    cores = os.cpu_count() or 1
    counts, n = [], 1
    while n <= cores:
        counts.append(n)
        n *= 2
    return counts


GROUPS: dict[str, Callable[[], list[str]]] = {
    "ladder": lambda: list(LADDER),
    "default": lambda: ["naive", *[f"naive-w{n}" for n in worker_counts()], "naive-pin", "tensor",
                        "batched", "pinned", "resident", "resident+foreach", "resident+fused"],
    "compile": lambda: ["resident+compile", "resident+compile-step", "resident+cudagraphs"],
    "all": lambda: [*GROUPS["default"](), *GROUPS["compile"]()],
}


def expand(names: tuple[str, ...] | None) -> list[str]:
    """Group names replaced by their members, order kept, duplicates dropped."""
    out: list[str] = []
    for name in names or ("default",):
        out += GROUPS[name]() if name in GROUPS else [name]
    return list(dict.fromkeys(out))


class LadderWorkload(ModelWorkload):
    """The VAE, Adam (lr 1e-3) and one pipeline of the ladder; one step = one batch."""

    parts = PARTS
    measure_bound = False  # set on the last rung asked for

    def __init__(self, name: str, split: MnistSplit, ctx: Context, spec: VariantSpec | None = None):
        spec = spec or parse(name)
        torch.manual_seed(ctx.seed)
        self.name = name
        self.device = ctx.device
        self.model = VAE().to(ctx.device)
        self.optimizer = make_optimizer(self.model.parameters(), 1e-3, spec.impl)
        self.pipeline: Pipeline = make_pipeline(spec.pipeline, split, batch_size=ctx.batch_size,
                                                device=ctx.device, seed=ctx.seed,
                                                num_workers=spec.num_workers, pin_memory=spec.pin_memory)
        self.batch_size = ctx.batch_size
        self.batches_per_epoch = len(self.pipeline)
        self.reference = reference_of(name)
        self.notes: dict[str, Any] = {}
        if spec.num_workers:
            # Worker processes prefetch (2 batches each): a one-step round would time a batch
            # fetched in advance. Each round first drains what was prefetched, then times the
            # steady state; the workers' work happens in other processes, which no profiler of
            # this one would see.
            self.min_round_warmup = 2 * spec.num_workers + 1
            self.min_round_steps = 4 * spec.num_workers
            self.profile = False
        if spec.compile != "none":
            self.notes["dynamo"] = _dynamo_report(ctx.device, ctx.batch_size)
        self.loss_fn, self.update_fn = step_functions(self.model, self.optimizer, spec.compile)
        self._description = split.description
        self._batches: Iterator[torch.Tensor] = iter(self.pipeline)

    def describe(self) -> str:
        return self._description

    def rewind(self) -> None:
        """Every measured round starts a fresh epoch with the same order: the same batches."""
        self.pipeline.rewind()
        self._batches = iter(self.pipeline)  # created now, so a tracer started before sees it

    def fetch(self) -> torch.Tensor:
        batch = next(self._batches, None)
        if batch is None:  # an epoch ended: the next one (a new permutation) starts
            self._batches = iter(self.pipeline)
            batch = next(self._batches)
        return batch  # (batch, 784) on the device

    def step(self, batch: torch.Tensor, part: Callable[[str], Any]) -> None:
        train_step(self.model, batch, self.optimizer, phase=part, loss_fn=self.loss_fn,
                   update_fn=self.update_fn)

    def profiled_functions(self) -> list[Callable[..., Any]]:
        """The rung's batch producer (and the naive per-sample __getitem__) and the train step."""
        found: list[Callable[..., Any]] = [vars(cls)["_batches"] for cls in type(self.pipeline).__mro__
                                           if "_batches" in vars(cls)]
        dataset = getattr(self.pipeline, "dataset", None)
        getitem = getattr(type(dataset), "__getitem__", None)
        if dataset is not None and getitem is not None and hasattr(getitem, "__code__"):
            found.append(getitem)
        return [*found, train_step]


@functools.cache
def _dynamo_report(device: torch.device, batch_size: int) -> dict[str, Any]:
    """Where Dynamo breaks the whole eager step: the same for every compiled variant, so found
    once per process -- and before anything is compiled, since ``explain`` resets Dynamo's
    caches and a compiled variant built earlier would recompile inside a measured round."""
    model = VAE().to(device)
    optimizer = make_optimizer(model.parameters())
    return graph_breaks(model, optimizer, torch.rand(batch_size, 784, device=device))


def _unavailable(spec: VariantSpec, device: torch.device) -> str | None:
    if device.type == "cuda":
        return None
    if PIPELINES[spec.pipeline].needs_cuda:
        return "needs CUDA (pinned host memory and asynchronous copies); on the CPU it would run as `batched`"
    if spec.pin_memory:
        return "needs CUDA (pinned memory only speeds up copies to a GPU)"
    if spec.compile == "cudagraphs":
        return "needs CUDA (CUDA graphs replay GPU kernels)"
    return None


def make(ctx: Context) -> dict[str, Callable[[], LadderWorkload]]:
    """The variants asked for (default: the ``default`` group); see the module docstring."""
    if ctx.dataset not in DATASETS:
        raise WorkloadError(f"--dataset {ctx.dataset!r}: choose one of {', '.join(DATASETS)}")
    names = expand(ctx.variants)
    specs = {name: parse(name) for name in names}
    if any(s.compile != "none" and not _unavailable(s, ctx.device) for s in specs.values()):
        _dynamo_report(ctx.device, ctx.batch_size)  # now, before any variant compiles
    if ctx.limit is not None and ctx.limit < ctx.batch_size:
        raise WorkloadError(f"--limit {ctx.limit} is smaller than one batch (--batch-size {ctx.batch_size})")
    try:
        split = load_mnist(ctx.data_dir, train=True, dataset=ctx.dataset, limit=ctx.limit,
                           progress=ctx.progress)
    except DataError as exc:
        raise WorkloadError(str(exc)) from None

    def builder(name: str) -> Callable[[], LadderWorkload]:
        def build() -> LadderWorkload:
            why = _unavailable(specs[name], ctx.device)
            if why:
                raise Unavailable(why)
            work = LadderWorkload(name, split, ctx, specs[name])
            work.measure_bound = name == names[-1]  # the last rung asked for: how close is it?
            return work
        return build

    return {name: builder(name) for name in names}


TARGET = 1.05  # the optimized rung should run within 5% of its compute-only bound


def report_sections(result: Any) -> list[str]:
    """The VAE's own part of summary.md: its target, Dynamo's graph breaks, rung x step table."""
    from bench.measure import derive

    lines: list[str] = []
    effs = derive.efficiencies(result)
    for name, eff in effs.items():
        if not eff.measurable:
            verdict = "not measurable on this run"
        elif eff.high <= TARGET:
            verdict = f"within {TARGET - 1:.0%} of its bound: target met"
        elif eff.low > TARGET:
            verdict = f"more than {TARGET - 1:.0%} over its bound: target missed"
        else:
            verdict = (f"the interval straddles {TARGET:.2f}: this run cannot tell whether the data "
                       f"path is within {TARGET - 1:.0%} of the bound")
        lines.append(f"- `{name}` at {eff.text()} of its compute-only bound: {verdict}.")
    breaks = {n: result[n].notes.get("dynamo") for n in result.measured}
    breaks = {n: d for n, d in breaks.items() if d}
    for name, dynamo in breaks.items():
        lines.append(f"- `{name}`: `torch._dynamo.explain` finds {dynamo['graph_breaks']} graph break(s) "
                     f"in the whole eager step ({'; '.join(dynamo['reasons'])}), which is why the "
                     "compiled variants compile forward+loss and the update as separate graphs.")
    grid = _grid(result)
    if not lines and not grid:
        return []
    return ["## The VAE ladder", "", *lines, *([""] if lines else []), *grid]


def _grid(result: Any) -> list[str]:
    """Data rung x step variant: each cell the median step, epoch estimate and speedup vs baseline."""
    import pandas as pd

    from bench.measure import derive

    base = result.baseline
    cells: dict[str, dict[str, str]] = {}
    steps: list[str] = ["(as is)"]
    for name in result.measured:
        rung, _, step = name.partition("+")
        step = step or "(as is)"
        if step not in steps:
            steps.append(step)
        up = derive.speedup(result, name, base) if base else None
        est = derive.epoch_estimate(result, name)
        cells.setdefault(rung, {})[step] = (
            f"{derive.step_seconds(result, name) * 1e3:.2f} ms, "
            + (f"{est:.1f} s/epoch, " if est else "")
            + (f"{up.value:.2f}x ({up.low:.2f}-{up.high:.2f})" if up and up.measurable
               else "not measurable" if up else ""))
    if len(steps) == 1:
        return []
    frame = pd.DataFrame([{"data rung": rung, **{s: row.get(s, "") for s in steps}}
                          for rung, row in cells.items()])
    return ["### Data rung x step variant", "", frame.to_markdown(index=False), "",
            f"Each cell: median step, epoch estimate, speedup vs `{base}` (95% CI).", ""]


make.selects_variants = True  # type: ignore[attr-defined]  # it reads ctx.variants (groups) itself
make.ordered = True  # type: ignore[attr-defined]  # the rungs form a ladder: each vs the one before
make.report = report_sections  # type: ignore[attr-defined]
