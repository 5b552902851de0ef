"""The data-pipeline ladder: five ways to feed the same batches, each removing one cost.

Every pipeline yields shuffled ``(batch, 784)`` float32 tensors in [0, 1] on the training
device; iterating it once is one epoch (a new permutation each time, seeded). All rungs
yield the same samples per epoch, only the work to get them differs:

===========  ===============================================================  ==================
name         what it does                                                     what it removes
===========  ===============================================================  ==================
naive        NumPy uint8 storage; per-sample PIL -> ToTensor; DataLoader with  (course original)
             default collate; ``.to(device)`` per batch
tensor       converted once to a float tensor; TensorDataset + DataLoader     per-sample convert
batched      one tensor, a permutation per epoch, gather by index; no loader  Python per sample
pinned       ``batched`` from pinned memory, async copy of the next batch     synchronous H2D
resident     whole data set on the device once; permutation+gather there      every H2D copy
===========  ===============================================================  ==================

``optimized`` is the name users see for ``resident``. Without CUDA, ``pinned`` and
``resident`` run their CPU meaning (they then equal ``batched``) and say so once in the log;
``pinned`` is marked ``needs_cuda`` (pinned memory means nothing without a GPU), so harnesses
leave it out on a CPU unless asked.

Each batch fetch runs inside ``record_function("enumerate(DataLoader)#<Class>.__next__")`` so
TensorBoard's profiler plugin counts it in its DataLoader column, whichever rung it is.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from torch.profiler import record_function
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import transforms

from vae.data import MnistSplit

log = logging.getLogger(__name__)


def as_float_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 784) in [0, 1]; the same arithmetic as ``ToTensor``."""
    return torch.from_numpy(images).reshape(len(images), -1).float().div(255)


class Pipeline(ABC):
    """One epoch of shuffled (batch, 784) float32 batches per iteration, on ``device``."""

    name: str = ""
    needs_cuda: bool = False  # True when the rung only means something on a GPU
    generator: torch.Generator  # the epoch's shuffling; set by each rung

    uses_dataloader: bool = False  # num_workers and pin_memory apply only to DataLoader rungs

    def __init__(self, split: MnistSplit, *, batch_size: int = 100, device: str | torch.device = "cpu",
                 seed: int = 0, num_workers: int = 0, pin_memory: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if (num_workers or pin_memory) and not self.uses_dataloader:
            raise ValueError(f"num_workers and pin_memory apply to the DataLoader pipelines (naive, "
                             f"tensor), not to {self.name!r}")
        if pin_memory and torch.device(device).type != "cuda":
            raise ValueError("pin_memory needs a CUDA device (pinned memory speeds up copies to a GPU)")
        self.num_workers, self.pin_memory = num_workers, pin_memory
        if len(split) == 0:
            raise ValueError("the data set is empty")
        self.split = split
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.seed = seed
        self.num_samples = len(split)
        self.fetch_label = f"enumerate(DataLoader)#{type(self).__name__}.__next__"

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def rewind(self) -> None:
        """Re-seed the shuffling, so the next epoch repeats the first epoch's order.

        A harness that restores a model between measured rounds calls this too, so that every
        round trains on the very same batches.
        """
        self.generator.manual_seed(self.seed)

    def __iter__(self) -> Iterator[torch.Tensor]:
        batches = self._batches()
        while True:
            with record_function(self.fetch_label):
                batch = next(batches, None)
            if batch is None:
                return
            yield batch

    @abstractmethod
    def _batches(self) -> Iterator[torch.Tensor]:
        """Yield the epoch's batches; the base class labels each fetch for the profiler."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, samples={self.num_samples}, "
                f"batch_size={self.batch_size}, device={self.device})")


class NaiveDataset(Dataset):
    """The course's dataset: NumPy storage, one PIL image -> ``ToTensor`` per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.transform = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index])  # 2-D uint8 -> mode "L"
        return self.transform(image), int(self.labels[index])  # (1, 28, 28) float in [0, 1]


def _loader(pipeline: Pipeline) -> DataLoader:
    """The shuffled DataLoader of a DataLoader rung; workers, when asked, persist across epochs
    (starting worker processes every epoch would be measured as data time)."""
    workers = pipeline.num_workers
    return DataLoader(pipeline.dataset, batch_size=pipeline.batch_size, shuffle=True,  # type: ignore[attr-defined]
                      generator=pipeline.generator, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=pipeline.pin_memory)


class NaivePipeline(Pipeline):
    """The course original: ``DataLoader(NaiveDataset, shuffle=True)`` and ``.to(device)``."""

    name = "naive"
    uses_dataloader = True

    def __init__(self, split: MnistSplit, **kw):
        super().__init__(split, **kw)
        self.dataset = NaiveDataset(split.images, split.labels)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.loader = _loader(self)

    def _batches(self) -> Iterator[torch.Tensor]:
        for x, _ in self.loader:
            yield x.view(x.size(0), -1).to(self.device, non_blocking=self.pin_memory)  # (batch, 784)


class TensorPipeline(Pipeline):
    """Converted to a float tensor once; ``TensorDataset`` + ``DataLoader`` + ``.to(device)``."""

    name = "tensor"
    uses_dataloader = True

    def __init__(self, split: MnistSplit, **kw):
        super().__init__(split, **kw)
        self.dataset = TensorDataset(as_float_tensor(split.images))
        self.generator = torch.Generator().manual_seed(self.seed)
        self.loader = _loader(self)

    def _batches(self) -> Iterator[torch.Tensor]:
        for (x,) in self.loader:
            yield x.to(self.device, non_blocking=self.pin_memory)  # (batch, 784)


class BatchedPipeline(Pipeline):
    """One tensor, one permutation per epoch, batches gathered with ``index_select``."""

    name = "batched"

    def __init__(self, split: MnistSplit, **kw):
        super().__init__(split, **kw)
        self.data = as_float_tensor(split.images)  # (N, 784) on the host
        self.generator = torch.Generator().manual_seed(self.seed)

    def _batches(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.num_samples, generator=self.generator)
        for start in range(0, self.num_samples, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.data.index_select(0, index).to(self.device)  # (batch, 784)


_warned: set[str] = set()


def _warn_cpu_meaning(name: str, detail: str) -> None:
    """Say once per process that a GPU rung runs as its CPU equivalent."""
    if name in _warned:
        return
    _warned.add(name)
    log.warning("pipeline %r: no CUDA device, so %s; on the CPU it runs as 'batched'", name, detail)


class PinnedPipeline(BatchedPipeline):
    """``batched`` from pinned host memory; the next batch's copy overlaps this step.

    Two pinned staging buffers alternate: the gather for batch i+1 writes one while the
    asynchronous copy of batch i may still read the other. The copy runs on a side stream;
    the consumer's stream waits for it through an event, and ``record_stream`` keeps the
    caching allocator from reusing the device memory too early.
    """

    name = "pinned"
    needs_cuda = True

    def __init__(self, split: MnistSplit, **kw):
        super().__init__(split, **kw)
        self.on_cuda = self.device.type == "cuda"
        if not self.on_cuda:
            _warn_cpu_meaning(self.name, "pinned memory and asynchronous copies do not apply")
            return
        self.data = self.data.pin_memory()
        self.staging = [torch.empty(self.batch_size, self.data.size(1), pin_memory=True)
                        for _ in range(2)]
        self.copied = [torch.cuda.Event() for _ in range(2)]
        self.stream = torch.cuda.Stream(device=self.device)

    def _copy(self, index: torch.Tensor, slot: int) -> tuple[torch.Tensor, torch.cuda.Event]:
        self.copied[slot].synchronize()  # the previous copy out of this buffer is done
        buffer = self.staging[slot][: len(index)]
        torch.index_select(self.data, 0, index, out=buffer)
        with torch.cuda.stream(self.stream):
            batch = buffer.to(self.device, non_blocking=True)  # (batch, 784)
            self.copied[slot].record(self.stream)
        return batch, self.copied[slot]

    def _batches(self) -> Iterator[torch.Tensor]:
        if not self.on_cuda:
            yield from super()._batches()
            return
        order = torch.randperm(self.num_samples, generator=self.generator)
        starts = range(0, self.num_samples, self.batch_size)
        pending = self._copy(order[: self.batch_size], 0)
        for i in range(len(starts)):
            batch, ready = pending
            if i + 1 < len(starts):  # start the next copy before handing this batch out
                nxt = starts[i + 1]
                pending = self._copy(order[nxt:nxt + self.batch_size], (i + 1) % 2)
            current = torch.cuda.current_stream(self.device)
            current.wait_event(ready)
            batch.record_stream(current)
            yield batch


class ResidentPipeline(Pipeline):
    """The whole data set on the device once; permutation and gather happen there.

    On the CPU the "device" is host memory, so it does the same work as ``batched``.
    """

    name = "resident"

    def __init__(self, split: MnistSplit, **kw):
        super().__init__(split, **kw)
        if self.device.type != "cuda":
            _warn_cpu_meaning(self.name, "the data set already lives in host memory")
        self.data = as_float_tensor(split.images).to(self.device)  # (N, 784) on the device
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)

    def _batches(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.num_samples, generator=self.generator, device=self.device)
        for start in range(0, self.num_samples, self.batch_size):
            yield self.data.index_select(0, order[start:start + self.batch_size])  # (batch, 784)


PIPELINES: dict[str, type[Pipeline]] = {
    "naive": NaivePipeline,
    "tensor": TensorPipeline,
    "batched": BatchedPipeline,
    "pinned": PinnedPipeline,
    "resident": ResidentPipeline,
    "optimized": ResidentPipeline,
}
LADDER: tuple[str, ...] = ("naive", "tensor", "batched", "pinned", "resident")


def canonical_name(name: str) -> str:
    """Resolve an alias (``optimized``) to its rung; unknown names raise a ValueError."""
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}: choose one of {', '.join(PIPELINES)}")
    return PIPELINES[name].name


def make_pipeline(name: str, split: MnistSplit, *, batch_size: int = 100,
                  device: str | torch.device = "cpu", seed: int = 0, num_workers: int = 0,
                  pin_memory: bool = False) -> Pipeline:
    """Build the pipeline called ``name`` over ``split``; unknown names list the valid ones.

    ``num_workers`` and ``pin_memory`` are the DataLoader's own options (naive and tensor only).
    """
    canonical_name(name)
    return PIPELINES[name](split, batch_size=batch_size, device=device, seed=seed,
                           num_workers=num_workers, pin_memory=pin_memory)
