"""A tiny workload for the instruction-count tests: a linear model on a fixed tensor.

Two variants that differ in one known way: ``copy`` clones every batch once more in its
fetch, as a careless change would. No torchvision, so it starts fast under Valgrind.
"""

from __future__ import annotations

import torch

from bench.workload import Context, ModelWorkload


class Tiny(ModelWorkload):
    batches_per_epoch = 32

    def __init__(self, ctx: Context, extra_copy: bool):
        torch.manual_seed(0)
        self.device = ctx.device
        self.model = torch.nn.Linear(64, 8)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.data = torch.randn(32 * 16, 64)
        self.extra_copy = extra_copy
        self.position = 0

    def rewind(self) -> None:
        self.position = 0

    def fetch(self) -> torch.Tensor:
        start = (self.position % self.batches_per_epoch) * 16
        self.position += 1
        batch = self.data[start:start + 16]  # (16, 64)
        return batch.clone() if self.extra_copy else batch.contiguous()

    def step(self, batch: torch.Tensor, part) -> None:
        self.optimizer.zero_grad()
        with part("forward"):
            loss = self.model(batch).square().mean()
        with part("backward"):
            loss.backward()
        with part("optimizer"):
            self.optimizer.step()


def make(ctx: Context) -> dict[str, object]:
    return {"plain": lambda: Tiny(ctx, False), "copy": lambda: Tiny(ctx, True)}
