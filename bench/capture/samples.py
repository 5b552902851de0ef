"""What one training step consumed, in samples: the batches drawn from a DataLoader inside the
step (gradient accumulation: all its micro-batches), else the distinct inputs of the outermost
module's forward (a script with no DataLoader)."""

from __future__ import annotations

import weakref
from typing import Any

import torch

from bench.capture.windows import batch_size_of

KEEP = 10_000  # steps (and sizes) kept: a long script's record stays small


class StepSamples:
    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []  # per step: (samples, batches or inputs)
        self.batch_sizes: list[int] = []  # every batch drawn from a DataLoader
        self.forward_sizes: list[int] = []  # every outermost forward's input
        self._batches: list[int] = []
        self._inputs: dict[tuple[int, int], tuple[weakref.ref, int]] = {}  # see input()
        self._input_sizes: list[int] = []

    def batch(self, batch: Any) -> None:
        """A batch drawn from a DataLoader."""
        size = batch_size_of(batch)
        if size is not None:
            self._batches.append(size)
            if len(self.batch_sizes) < KEEP:
                self.batch_sizes.append(size)

    def input(self, tensor: torch.Tensor) -> None:
        """An outermost forward's input, counted once per step: the same address, the same root
        tensor (a view's base) still alive, and unchanged since (its version counter) is the same
        input. A closure that re-evaluates one batch (LBFGS), even through a new view, is one
        input; a new micro-batch is another even where the allocator hands it the freed one's
        memory (the address alone merged them), as is a buffer the script refills in place;
        slices of one tensor differ by address."""
        size = int(tensor.shape[0])
        if len(self.forward_sizes) < KEEP:
            self.forward_sizes.append(size)
        root = tensor._base if tensor._base is not None else tensor
        key = (tensor.data_ptr(), size)
        seen = self._inputs.get(key)
        if seen is not None and seen[0]() is root and seen[1] == tensor._version:
            return
        self._inputs[key] = (weakref.ref(root), tensor._version)
        self._input_sizes.append(size)

    def end_step(self) -> None:
        used = self._batches or self._input_sizes
        if used and len(self.steps) < KEEP:
            self.steps.append((sum(used), len(used)))
        self._batches, self._inputs, self._input_sizes = [], {}, []

    def batch_size(self) -> int | None:
        """Samples per step, the most common over the steps seen; else the most common batch."""
        if self.steps:
            totals = [n for n, _ in self.steps]
            return max(set(totals), key=totals.count)
        sizes = self.batch_sizes or self.forward_sizes
        return max(set(sizes), key=sizes.count) if sizes else None

    def micro_batches(self) -> int:
        """Batches (or distinct forward inputs) per step, the most common: above 1, the script
        accumulates gradients over that many micro-batches."""
        counts = [k for _, k in self.steps]
        return max(set(counts), key=counts.count) if counts else 1
