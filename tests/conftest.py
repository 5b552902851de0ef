"""Shared small data: a generated MNIST-shaped set written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vae.data import SYNTHETIC_SUBDIR, load_mnist, write_synthetic_mnist

TRAIN_SIZE, TEST_SIZE = 600, 200


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-dir holding a small generated set, where `--dataset auto` finds it."""
    root = tmp_path_factory.mktemp("data")
    write_synthetic_mnist(root / SYNTHETIC_SUBDIR, sizes={"train": TRAIN_SIZE, "t10k": TEST_SIZE},
                          progress=False)
    return root


@pytest.fixture(scope="session")
def train_split(data_root: Path):
    return load_mnist(data_root, train=True, progress=False)


@pytest.fixture(scope="session")
def test_split(data_root: Path):
    return load_mnist(data_root, train=False, progress=False)


@pytest.fixture(autouse=True)
def _two_threads():
    """Pin the thread count: results and timings must not depend on the host's core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
