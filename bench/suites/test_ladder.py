"""What each rung of the data-pipeline ladder costs: fetch, step, epoch, and the parts.

Groups (pytest-benchmark): ``fetch`` (one batch on the device, no model), ``step`` (one
training step, fetch included; deterministic counters in extra_info), ``epoch`` (one epoch of
a fixed subset), ``components`` (the naive path's parts and the compute-only bound).
"""

from __future__ import annotations

import time

import pytest
import torch
from torch.utils.data import default_collate

from bench.counters import count_step
from bench.runner import Workload
from bench.spec import RunSpec
from vae.device import synchronize
from vae.pipelines import LADDER, PIPELINES, as_float_tensor, make_pipeline
from vae.train import train_epoch, train_step


def _workload(name: str, split, settings) -> Workload:
    if PIPELINES[name].needs_cuda and settings.device.type != "cuda":
        pytest.skip(f"{name}: needs CUDA (pinned host memory and async copies); "
                    "no CUDA device here")
    return Workload(RunSpec(pipeline=name, device=settings.device.type), split, settings.device)


@pytest.mark.parametrize("pipeline", LADDER)
def test_fetch(benchmark, record, settings, split, pipeline):
    work = _workload(pipeline, split, settings)

    def fetch() -> None:
        work.fetch()
        synchronize(work.device)

    record(pipeline=pipeline, batch_size=100, unit="batch")
    benchmark.group = "fetch"
    benchmark.pedantic(fetch, rounds=settings.rounds(100, 20), iterations=1,
                       warmup_rounds=settings.rounds(10, 3))


@pytest.mark.parametrize("pipeline", LADDER)
def test_step(benchmark, record, settings, split, pipeline):
    """One training step; weights are reset every round so the work stays the same."""
    work = _workload(pipeline, split, settings)
    work.warm_up(3)
    model_state = {k: v.clone() for k, v in work.model.state_dict().items()}
    optim_state = work.optimizer.state_dict()

    def reset() -> None:
        work.model.load_state_dict(model_state)
        work.optimizer.load_state_dict(optim_state)

    def step() -> None:
        work.step()
        synchronize(work.device)

    record(pipeline=pipeline, batch_size=100, unit="step", **count_step(work).as_dict())
    benchmark.group = "step"
    benchmark.pedantic(step, setup=reset, rounds=settings.rounds(40, 10), iterations=1,
                       warmup_rounds=settings.rounds(5, 2))


@pytest.mark.parametrize("pipeline", LADDER)
def test_epoch(benchmark, record, settings, epoch_split, pipeline):
    if PIPELINES[pipeline].needs_cuda and settings.device.type != "cuda":
        pytest.skip(f"{pipeline}: needs CUDA (pinned host memory and async copies); no CUDA device here")
    torch.manual_seed(0)
    from vae.model import VAE

    model = VAE().to(settings.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = make_pipeline(pipeline, epoch_split, device=settings.device)

    def epoch() -> None:
        train_epoch(model, data, optimizer)  # ends with .item(): synchronized
        synchronize(settings.device)

    record(pipeline=pipeline, batch_size=100, unit="epoch", samples=len(epoch_split),
           batches=len(data))
    benchmark.group = "epoch"
    benchmark.pedantic(epoch, rounds=settings.rounds(5, 2), iterations=1, warmup_rounds=1)


def test_naive_getitem(benchmark, record, split):
    dataset = make_pipeline("naive", split).dataset
    record(component="one __getitem__ (PIL -> ToTensor)", unit="sample")
    benchmark.group = "components"
    benchmark(dataset.__getitem__, 7)


def test_naive_collate(benchmark, record, split):
    dataset = make_pipeline("naive", split).dataset
    samples = [dataset[i] for i in range(100)]
    record(component="default_collate of 100 samples", unit="batch")
    benchmark.group = "components"
    benchmark(default_collate, samples)


def test_host_to_device_copy(benchmark, record, settings, split):
    if settings.device.type != "cuda":
        pytest.skip("host-to-device copy: no CUDA device here, there is nothing to copy to")
    batch = as_float_tensor(split.images[:100])

    def copy() -> None:
        batch.to(settings.device)
        synchronize(settings.device)

    record(component="one (100, 784) float32 batch to the GPU, pageable", unit="batch")
    benchmark.group = "components"
    benchmark(copy)


class BoundStep:
    """The compute-only bound: train_step on one resident batch that never changes."""

    def __init__(self, split, device: torch.device):
        from vae.model import VAE

        torch.manual_seed(0)
        self.device = device
        self.model = VAE().to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.batch = as_float_tensor(split.images[:100]).to(device)  # (100, 784)
        for _ in range(3):
            train_step(self.model, self.batch, self.optimizer)
        self.model_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.optim_state = self.optimizer.state_dict()

    def reset(self) -> None:
        self.model.load_state_dict(self.model_state)
        self.optimizer.load_state_dict(self.optim_state)

    def __call__(self) -> None:
        train_step(self.model, self.batch, self.optimizer)
        synchronize(self.device)


def test_compute_bound(benchmark, record, settings, split):
    """Fetch-free training step on one resident batch: what a free data pipeline would give."""
    bound = BoundStep(split, settings.device)
    reset, step = bound.reset, bound

    record(component="compute-only bound: train_step on one resident batch", unit="step")
    benchmark.group = "components"
    benchmark.pedantic(step, setup=reset, rounds=settings.rounds(40, 10), iterations=1,
                       warmup_rounds=settings.rounds(5, 2))


def test_efficiency_interleaved(benchmark, record, settings, split):
    """optimized step / compute-only bound, measured in alternating pairs (A B A B ...).

    Separate benchmarks run minutes apart and this machine drifts between runs by more than
    the 5% being asked about; alternating the two steps inside one benchmark makes the drift
    hit both alike. Each round times one optimized step and one bound step; the ratio of their
    medians, with a 95% bootstrap interval, goes into extra_info.
    """
    from bench.compare import ratio_ci
    from bench.stats import median

    work = _workload("resident", split, settings)
    work.warm_up(3)
    bound = BoundStep(split, settings.device)
    times: dict[str, list[float]] = {"optimized": [], "bound": []}

    def pair() -> None:
        for name, fn in (("optimized", work.step), ("bound", bound)):
            start = time.perf_counter()
            fn()
            synchronize(settings.device)
            times[name].append(time.perf_counter() - start)

    benchmark.group = "efficiency"
    rounds = settings.rounds(60, 15)
    benchmark.pedantic(pair, rounds=rounds, iterations=1, warmup_rounds=settings.rounds(5, 2))
    n = rounds
    opt, bnd = times["optimized"][-n:], times["bound"][-n:]  # the timed rounds only
    low, high = ratio_ci(bnd, opt)
    record(unit="pair of steps", optimized_ms=median(opt) * 1e3, bound_ms=median(bnd) * 1e3,
           efficiency=median(opt) / median(bnd), efficiency_ci=[low, high])
