"""Fixtures and options of the benchmark suites (run by `nox -s bench`, not by `nox -s tests`).

Options: --vb-workload (a factory, default the built-in VAE ladder), --vb-variants,
--vb-device, --vb-data-dir, --vb-dataset, --vb-limit, --vb-batch-size, --vb-threads, --vb-quick.
The variants are read from the workload at collection, so each becomes a parametrized
benchmark; one that cannot run here is skipped with its reason. Every benchmark records the
workload, variant, device, torch version, data and thread count in its ``extra_info``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.defaults import BUILTIN
from bench.measure.environment import Environment
from bench.workload import Context, Unavailable, Variants, WorkloadError, variants_of

_VARIANTS = pytest.StashKey[Variants]()
COUNTS = pytest.StashKey[Any]()  # the cost suite's Counts, saved into the benchmark JSON


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vaebench")
    group.addoption("--vb-workload", default=BUILTIN, help="workload factory, module:make or file.py:make")
    group.addoption("--vb-variants", default=None, help="comma list of variants (default: all)")
    group.addoption("--vb-data-dir", default="data", help="MNIST folder (see python -m vae train --help)")
    group.addoption("--vb-dataset", default="auto", help="auto | mnist | synthetic (built-in workload)")
    group.addoption("--vb-device", default="auto", choices=("auto", "cpu", "cuda"))
    group.addoption("--vb-limit", type=int, default=10_000, help="training samples the workload holds")
    group.addoption("--vb-batch-size", type=int, default=100)
    group.addoption("--vb-threads", type=int, default=None, help="torch intra-op threads")
    group.addoption("--vb-quick", action="store_true", help="fewer rounds: a smoke run")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--vb-device cuda: no CUDA device here; use cpu or auto")
    return torch.device(name)


def _variants(config: pytest.Config) -> Variants:
    if _VARIANTS not in config.stash:
        threads = config.getoption("--vb-threads")
        if threads:
            torch.set_num_threads(threads)
        asked = config.getoption("--vb-variants")
        ctx = Context(device=_device(config.getoption("--vb-device")),
                      batch_size=config.getoption("--vb-batch-size"),
                      data_dir=Path(config.getoption("--vb-data-dir")),
                      dataset=config.getoption("--vb-dataset"), limit=config.getoption("--vb-limit"),
                      variants=tuple(v.strip() for v in asked.split(",")) if asked else None)
        try:
            config.stash[_VARIANTS] = variants_of(config.getoption("--vb-workload"), ctx)
        except WorkloadError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[_VARIANTS]


def pytest_configure(config: pytest.Config) -> None:
    """Load the workload at once, so a bad --vb-workload is one usage error, not a collection error."""
    _variants(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" in metafunc.fixturenames:
        metafunc.parametrize("variant", list(_variants(metafunc.config)))


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict) -> None:
    """Store the cost suite's instruction counts beside the timings, where compare finds them."""
    if COUNTS in config.stash:
        output_json["instructions"] = config.stash[COUNTS].as_dict()


class Settings:
    """What the options resolve to, shared by every benchmark of the session."""

    def __init__(self, config: pytest.Config):
        self.variants = _variants(config)
        self.quick = bool(config.getoption("--vb-quick"))
        self.workload = config.getoption("--vb-workload")
        self._built: dict[str, Any] = {}

    def rounds(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def work(self, name: str) -> Any:
        """The built variant (once per session); skipped with its reason when it cannot run here."""
        if name not in self._built:
            try:
                self._built[name] = self.variants.build(name)
            except Unavailable as exc:
                self._built[name] = exc
        built = self._built[name]
        if isinstance(built, Unavailable):
            pytest.skip(f"{name}: {built}")
        return built


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> Settings:
    return Settings(pytestconfig)


@pytest.fixture
def record(benchmark: Any, settings: Settings):
    """Fill a benchmark's extra_info with what a reader needs to trust the number."""

    def _record(work: Any, **extra: object) -> None:
        env = Environment.capture(torch.device(work.device))
        benchmark.extra_info.update(
            workload=settings.workload, device=env.device, gpu=env.gpu, torch=env.torch,
            threads=env.threads, cpu=env.cpu,
            data=work.describe() if hasattr(work, "describe") else "",
            batch_size=getattr(work, "batch_size", None), **extra)

    return _record
