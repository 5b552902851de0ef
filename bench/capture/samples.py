"""What one training step consumed, in samples, on scripts nobody here wrote.

A step (one round of the script's optimizers) is cut at each ``optimizer.step()`` into
**segments**. A segment's samples are the batches drawn from a DataLoader inside it (gradient
accumulation: all its micro-batches); a script with no DataLoader, the **data** its forwards
took: inputs of the models that optimizer trains that are neither a model's output of this step
(a GAN's ``fake.detach()``: same storage) nor tensors that require gradients (a decoder's
``z``, a layer's input when a model is called layer by layer, a gradient penalty's
interpolates). Each optimizer's segments add up over the round; the step consumed what its
hungriest optimizer did: a WGAN's five critic batches, not those plus the generator's noise.
The segment's micro-batches above one are gradients accumulated; several batches over several
optimizer steps (the critic's five) are not.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from bench.capture.windows import batch_size_of
from bench.measure.memory import storage_of

KEEP = 10_000  # steps (and sizes) kept: a long script's record stays small
OUTPUTS = 4  # tensors of a forward's output remembered (a tuple's, a dict's first)


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    values = output if isinstance(output, list | tuple) else ()
    return [v for v in values if isinstance(v, torch.Tensor)][:OUTPUTS]


class StepSamples:
    def __init__(self) -> None:
        # per step: (samples, batches, micro-batches per optimizer step)
        self.steps: list[tuple[int, int, int]] = []
        self.batch_sizes: list[int] = []  # every batch drawn from a DataLoader
        self.forward_sizes: list[int] = []  # every outermost forward's input
        self.last: int | None = None  # the latest batch drawn or forward input's first dimension
        self._batches: list[int] = []  # the segment's: drawn from a DataLoader
        self._inputs: list[tuple[int, int, bool]] = []  # the segment's: (module id, size, data)
        self._seen: dict[tuple[int, int], tuple[weakref.ref, int]] = {}  # see _new()
        self._outputs: dict[int, weakref.ref] = {}  # the step's models' outputs: storage address -> storage
        self._round: dict[int, list[int]] = {}  # optimizer id -> [samples, batches, optimizer steps]
        self._params: dict[int, set[int]] = {}  # optimizer id -> its parameters' ids
        self._trains: dict[tuple[int, int], bool] = {}  # (module id, optimizer id) -> trains it
        self._modules: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()

    def batch(self, batch: Any) -> None:
        """A batch drawn from a DataLoader."""
        size = batch_size_of(batch)
        if size is not None:
            self.last = size
            self._batches.append(size)
            if len(self.batch_sizes) < KEEP:
                self.batch_sizes.append(size)

    def input(self, module: Any, tensor: torch.Tensor) -> None:
        """An outermost forward's (first) input, counted once per step (see :meth:`_new`)."""
        size = int(tensor.shape[0])
        self.last = size
        if len(self.forward_sizes) < KEEP:
            self.forward_sizes.append(size)
        if self._new(tensor, size):
            self._modules[id(module)] = module
            self._inputs.append((id(module), size, not tensor.requires_grad and not self._an_output(tensor)))

    def output(self, output: Any) -> None:
        """An outermost forward's output: a later forward's input sharing its storage is no data."""
        for tensor in _tensors(output):
            storage = storage_of(tensor)
            if storage is not None:
                self._outputs[storage.data_ptr()] = weakref.ref(storage)

    def _an_output(self, tensor: torch.Tensor) -> bool:
        # a storage's Python object lives as long as the storage: the weak reference dies with it
        storage = storage_of(tensor)
        seen = self._outputs.get(storage.data_ptr()) if storage is not None else None
        return seen is not None and seen() is storage

    def _new(self, tensor: torch.Tensor, size: int) -> bool:
        """The same address, the same root tensor (a view's base) still alive, and unchanged since
        (its version counter) is the same input. A closure that re-evaluates one batch (LBFGS),
        even through a new view, is one input; a new micro-batch is another even where the
        allocator hands it the freed one's memory (the address alone merged them), as is a buffer
        the script refills in place; slices of one tensor differ by address."""
        root = tensor._base if tensor._base is not None else tensor
        key = (tensor.data_ptr(), size)
        seen = self._seen.get(key)
        if seen is not None and seen[0]() is root and seen[1] == tensor._version:
            return False
        self._seen[key] = (weakref.ref(root), tensor._version)
        return True

    def optimizer_step(self, optimizer: Any) -> None:
        """An optimizer stepped: the segment before it is that optimizer's."""
        self._end_segment(optimizer)

    def _end_segment(self, optimizer: Any) -> None:
        samples, batches = self._segment(optimizer)
        totals = self._round.setdefault(id(optimizer), [0, 0, 0])
        totals[0] += samples
        totals[1] += batches
        totals[2] += optimizer is not None
        self._batches, self._inputs = [], []

    def _segment(self, optimizer: Any) -> tuple[int, int]:
        """(samples, batches) of the segment: the DataLoader's batches; else the data the models
        the optimizer trains took; else any model's data (a frozen backbone's input); else the
        inputs of the trained models (the points of a physics-informed loss require gradients)."""
        if self._batches:
            return sum(self._batches), len(self._batches)
        trained = [(size, data) for module, size, data in self._inputs if self._trained(module, optimizer)]
        for chosen in ([s for s, data in trained if data], [s for _, s, data in self._inputs if data],
                       [s for s, _ in trained]):
            if chosen:
                return sum(chosen), len(chosen)
        return 0, 0

    def _trained(self, module_id: int, optimizer: Any) -> bool:
        if optimizer is None:  # parameters updated by hand: every model is trained
            return True
        key = (module_id, id(optimizer))
        if key not in self._trains:
            params = self._params.setdefault(
                id(optimizer), {id(p) for group in optimizer.param_groups for p in group["params"]})
            module = self._modules.get(module_id)
            self._trains[key] = module is not None and any(id(p) in params for p in module.parameters())
        return self._trains[key]

    def end_step(self) -> None:
        if self._batches or self._inputs:  # a step ended by backward(): no optimizer to split it
            self._end_segment(None)
        counted = [t for t in self._round.values() if t[0]]
        if counted and len(self.steps) < KEEP:
            samples, batches, steps = max(counted, key=lambda t: t[0])
            self.steps.append((samples, batches, max(1, round(batches / steps)) if steps else batches))
        self._round, self._seen, self._outputs = {}, {}, {}
        self._params, self._trains = {}, {}  # an optimizer's groups change (unfreezing), an id is reused
        self._batches, self._inputs = [], []

    def batch_size(self) -> int | None:
        """Samples per step, the most common over the steps seen; else the most common batch."""
        if self.steps:
            totals = [n for n, _, _ in self.steps]
            return max(set(totals), key=totals.count)
        sizes = self.batch_sizes or self.forward_sizes
        return max(set(sizes), key=sizes.count) if sizes else None

    def batches(self) -> int:
        """Batches per step, the most common: a WGAN's critic steps five times on five."""
        return _most_common([b for _, b, _ in self.steps])

    def micro_batches(self) -> int:
        """Batches per optimizer step, the most common: above 1, the script accumulates gradients
        over that many micro-batches."""
        return _most_common([m for _, _, m in self.steps])


def _most_common(counts: list[int]) -> int:
    return max(set(counts), key=counts.count) if counts else 1
