"""A workload that is not the VAE: a small CNN classifier on MNIST, written as a user would.

    python -m bench profile --workload examples/cnn.py:make
    nox -s bench -- --workload examples/cnn.py:make

Two variants of the same training loop: ``dataloader`` (torchvision's MNIST dataset,
``ToTensor`` per sample, an ordinary shuffled ``DataLoader``) and ``preloaded`` (the same
images converted once and kept on the device, batches gathered by index).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from bench.workload import Context, ModelWorkload
from vae.data import load_mnist


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3)  # (B, 8, 26, 26)
        self.conv2 = nn.Conv2d(8, 16, 3)  # (B, 16, 11, 11)
        self.fc = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 8, 13, 13)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 16, 5, 5)
        return self.fc(x.flatten(1))  # (B, 10) logits


class CNNWorkload(ModelWorkload):
    parts = ("data", "forward", "backward", "optimizer")

    def __init__(self, ctx: Context, preloaded: bool):
        torch.manual_seed(ctx.seed)
        self.device, self.batch_size = ctx.device, ctx.batch_size
        self.model = SmallCNN().to(ctx.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        # The MNIST files (real, or the generated stand-in that vae.data writes once).
        root = load_mnist(ctx.data_dir, train=True, dataset=ctx.dataset, limit=1).root
        dataset = datasets.MNIST(str(root), train=True, transform=transforms.ToTensor())
        if ctx.limit:
            dataset = Subset(dataset, range(min(ctx.limit, len(dataset))))
        self.generator = torch.Generator().manual_seed(ctx.seed)
        self.seed = ctx.seed
        self.preloaded = preloaded
        # How close does the preloaded loop run to its compute-only bound (its step on one
        # batch that never changes)? The harness measures that for the variants that ask.
        self.measure_bound = preloaded
        if preloaded:
            full = dataset.dataset if isinstance(dataset, Subset) else dataset
            n = len(dataset)
            self.images = (full.data[:n].float() / 255).unsqueeze(1).to(ctx.device)  # (N, 1, 28, 28)
            self.labels = full.targets[:n].to(ctx.device)  # (N,)
            self.batches_per_epoch = -(-n // ctx.batch_size)
        else:
            self.loader = DataLoader(dataset, batch_size=ctx.batch_size, shuffle=True,
                                     generator=self.generator)
            self.batches_per_epoch = len(self.loader)
        self.rewind()

    def describe(self) -> str:
        return f"MNIST files for a CNN, {self.batches_per_epoch} batches of {self.batch_size} per epoch"

    def rewind(self) -> None:
        self.generator.manual_seed(self.seed)
        self._it = self._epoch()

    def _epoch(self):
        if self.preloaded:
            order = torch.randperm(len(self.labels), generator=self.generator).to(self.device)
            for i in range(0, len(order), self.batch_size):
                index = order[i:i + self.batch_size]
                yield self.images[index], self.labels[index]
        else:
            for x, y in self.loader:
                yield x.to(self.device), y.to(self.device)

    def fetch(self):
        batch = next(self._it, None)
        if batch is None:  # the epoch ended: start the next one
            self._it = self._epoch()
            batch = next(self._it)
        return batch

    def step(self, batch, part) -> None:
        x, y = batch
        with part("forward"):
            loss = F.cross_entropy(self.model(x), y)
        with part("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with part("optimizer"):
            self.optimizer.step()


def make(ctx: Context):
    return {"dataloader": lambda: CNNWorkload(ctx, preloaded=False),
            "preloaded": lambda: CNNWorkload(ctx, preloaded=True)}
