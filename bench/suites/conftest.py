"""Fixtures and options of the benchmark suites (run by `nox -s bench`, not by `nox -s tests`).

Options: the workload's own (bench/options.py) with a ``--vb-`` prefix -- --vb-workload,
--vb-variants, --vb-data-dir, --vb-dataset, --vb-limit, --vb-batch-size, --vb-device,
--vb-threads, --vb-seed -- and --vb-quick.
The variants are read from the workload at collection, so each becomes a parametrized
benchmark; one that cannot run here is skipped with its reason. Every benchmark records the
workload, variant, device, torch version, data and thread count in its ``extra_info``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.measure.environment import Environment
from bench.options import RUN_OPTIONS, WORKLOAD_OPTIONS, WorkloadChoice, add_options
from bench.workload import Context, Unavailable, Variants, WorkloadError, variants_of
from plumbing.devices import DeviceError, resolve_device

_VARIANTS = pytest.StashKey[Variants]()
COUNTS = pytest.StashKey[Any]()  # the instructions suite's Counts, saved into the benchmark JSON


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vaebench")
    add_options(group.addoption, [*WORKLOAD_OPTIONS, *RUN_OPTIONS], prefix="--vb-", limit=10_000)
    group.addoption("--vb-quick", action="store_true", help="fewer rounds: a smoke run")
    group.addoption("--vb-instructions", type=Path, default=None, metavar="JSON",
                    help="take the instruction counts from this `bench instructions` file (counted "
                         "beforehand, e.g. beside the timings) instead of counting them here")


def _variants(config: pytest.Config) -> Variants:
    if _VARIANTS not in config.stash:
        threads = config.getoption("vb_threads")
        if threads:
            torch.set_num_threads(threads)
        try:
            device = resolve_device(config.getoption("vb_device"))
        except DeviceError as exc:
            raise pytest.UsageError(f"--vb-device: {exc}") from None
        choice = WorkloadChoice.of({k: config.getoption(k) for k in (
            "vb_workload", "vb_batch_size", "vb_data_dir", "vb_dataset", "vb_limit", "vb_variants")}, "vb_")
        ctx = Context(device=device, seed=config.getoption("vb_seed"), **choice.context())
        try:
            config.stash[_VARIANTS] = variants_of(choice.workload, ctx)
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
    """Store the instructions suite's counts beside the timings, where compare finds them."""
    if COUNTS in config.stash:
        output_json["instructions"] = config.stash[COUNTS].as_dict()


class Settings:
    """What the options resolve to, shared by every benchmark of the session."""

    def __init__(self, config: pytest.Config):
        self.variants = _variants(config)
        self.quick = bool(config.getoption("vb_quick"))
        self.workload = config.getoption("vb_workload")
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
