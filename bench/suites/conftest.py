"""Fixtures and options of the benchmark suites (run by `nox -s bench`, not by `nox -s tests`).

Options: --vb-data-dir, --vb-dataset, --vb-device, --vb-limit, --vb-threads, --vb-quick.
Every benchmark records the device, torch version, data set, thread count and pipeline in
its ``extra_info``; timed functions synchronize the device before returning.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.environment import Environment
from vae.data import MnistSplit, load_mnist
from vae.device import resolve_device


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vaebench")
    group.addoption("--vb-data-dir", default="data", help="MNIST folder (see python -m vae train --help)")
    group.addoption("--vb-dataset", default="auto", choices=("auto", "mnist", "synthetic"))
    group.addoption("--vb-device", default="auto", choices=("auto", "cpu", "cuda"))
    group.addoption("--vb-limit", type=int, default=10_000, help="training samples the pipelines hold")
    group.addoption("--vb-epoch-limit", type=int, default=2_000, help="samples in the `epoch` group")
    group.addoption("--vb-threads", type=int, default=None, help="torch intra-op threads")
    group.addoption("--vb-quick", action="store_true", help="fewer rounds: a smoke run")


class Settings:
    """What the options resolve to, shared by every benchmark of the session."""

    def __init__(self, config: pytest.Config):
        self.device = resolve_device(config.getoption("--vb-device"))
        threads = config.getoption("--vb-threads")
        if threads:
            torch.set_num_threads(threads)
        self.quick = bool(config.getoption("--vb-quick"))
        self.data_dir = Path(config.getoption("--vb-data-dir"))
        self.dataset = config.getoption("--vb-dataset")
        self.limit = config.getoption("--vb-limit")
        self.epoch_limit = config.getoption("--vb-epoch-limit")
        self.environment = Environment.capture(self.device)

    def rounds(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> Settings:
    return Settings(pytestconfig)


@pytest.fixture(scope="session")
def split(settings: Settings) -> MnistSplit:
    return load_mnist(settings.data_dir, train=True, dataset=settings.dataset,
                      limit=settings.limit, progress=False)


@pytest.fixture(scope="session")
def epoch_split(split: MnistSplit, settings: Settings) -> MnistSplit:
    n = min(settings.epoch_limit, len(split))
    return MnistSplit(split.images[:n], split.labels[:n], split.source, split.root, split.train)


@pytest.fixture
def record(benchmark, settings: Settings, split: MnistSplit):
    """Fill a benchmark's extra_info with what a reader needs to trust the number."""

    def _record(**extra: object) -> None:
        benchmark.extra_info.update(
            device=settings.device.type, gpu=settings.environment.gpu,
            torch=torch.__version__, threads=torch.get_num_threads(),
            dataset=split.description, cpu=settings.environment.cpu, **extra,
        )

    return _record
