"""The built-in workload: the course VAE on MNIST, one variant per rung of the data ladder.

This is an ordinary workload factory (``bench.workloads.ladder:make``); the measuring code knows
it only by that name, as it knows a user's. The last variant asked for also gives the
compute-only bound (the same step on one batch that never changes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from bench.workload import Context, ModelWorkload, Unavailable, WorkloadError
from vae.data import DATASETS, DataError, MnistSplit, load_mnist
from vae.model import VAE
from vae.pipelines import LADDER, PIPELINES, Pipeline, make_pipeline
from vae.train import train_step

PARTS = ("data", "forward", "backward", "optimizer")


class LadderWorkload(ModelWorkload):
    """The VAE, Adam (lr 1e-3) and one pipeline of the ladder; one step = one batch."""

    parts = PARTS

    def __init__(self, name: str, split: MnistSplit, ctx: Context):
        torch.manual_seed(ctx.seed)
        self.name = name
        self.device = ctx.device
        self.model = VAE().to(ctx.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.pipeline: Pipeline = make_pipeline(name, split, batch_size=ctx.batch_size,
                                                device=ctx.device, seed=ctx.seed)
        self.batch_size = ctx.batch_size
        self.batches_per_epoch = len(self.pipeline)
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
        train_step(self.model, batch, self.optimizer, phase=part)

    def profiled_functions(self) -> list[Callable[..., Any]]:
        """The rung's batch producer (and the naive per-sample __getitem__) and the train step."""
        found: list[Callable[..., Any]] = [vars(cls)["_batches"] for cls in type(self.pipeline).__mro__
                                           if "_batches" in vars(cls)]
        dataset = getattr(self.pipeline, "dataset", None)
        getitem = getattr(type(dataset), "__getitem__", None)
        if dataset is not None and getitem is not None and hasattr(getitem, "__code__"):
            found.append(getitem)
        return [*found, train_step]


def make(ctx: Context) -> dict[str, Callable[[], LadderWorkload]]:
    """Every rung (``pinned`` is skipped without CUDA); ``--variants`` may also say ``optimized``."""
    if ctx.dataset not in DATASETS:
        raise WorkloadError(f"--dataset {ctx.dataset!r}: choose one of {', '.join(DATASETS)}")
    names = ctx.variants or LADDER
    for name in names:
        if name not in PIPELINES:
            raise WorkloadError(f"--variants: unknown pipeline {name!r}: choose from {', '.join(PIPELINES)}")
    if ctx.limit is not None and ctx.limit < ctx.batch_size:
        raise WorkloadError(f"--limit {ctx.limit} is smaller than one batch (--batch-size {ctx.batch_size})")
    try:
        split = load_mnist(ctx.data_dir, train=True, dataset=ctx.dataset, limit=ctx.limit,
                           progress=ctx.progress)
    except DataError as exc:
        raise WorkloadError(str(exc)) from None

    def builder(name: str) -> Callable[[], LadderWorkload]:
        def build() -> LadderWorkload:
            if PIPELINES[name].needs_cuda and ctx.device.type != "cuda":
                raise Unavailable("needs CUDA (pinned host memory and asynchronous copies); on the "
                                  "CPU it would run as `batched`")
            return LadderWorkload(name, split, ctx)
        return build

    return {name: builder(name) for name in names}
