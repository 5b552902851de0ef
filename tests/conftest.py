"""Shared small data: a generated MNIST-shaped set written once per test session; the instruction
count of the tiny workload, started in the background when the session begins."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from plumbing.files import write_atomic
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


WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # set in a worker of `pytest -n N`


@pytest.fixture(autouse=True)
def _one_thread():
    """Pin the thread count: results must not depend on the host's core count. One: the tiny
    steps here gain nothing from a second thread, whose OpenMP spin-waiting would take the core
    that the background count and the tests' subprocesses use."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ROOT = Path(__file__).resolve().parents[1]
COUNTED_IN_BACKGROUND = "test_callgrind_counts_are_exact_and_see_one_extra_copy"
FOLDER_ENV = "VAEBENCH_TEST_COUNTS"  # the background count's folder, read by xdist's workers
_BACKGROUND = pytest.StashKey[subprocess.Popen]()


def pytest_configure(config: pytest.Config) -> None:
    """Valgrind counts the tiny workload on one core for about a minute, beside the other tests
    (not niced: starved, it would be the last thing running, on a core that is otherwise idle).
    On a whole run it starts here, before collection -- in xdist's
    controller, once, for whichever worker gets the test; otherwise the test starts it itself."""
    if WORKER or os.environ.get(FOLDER_ENV):
        return
    whole = not config.args or [Path(a).resolve() for a in config.args] == [ROOT / "tests"]
    if whole and not config.getoption("keyword") and not config.getoption("markexpr"):
        _count_in_background(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every import of every test module set aside from the cyclic collector once collected
    (~530k objects: torch, torchvision, pandas, Lightning, W&B...). The memory window runs a full
    collection before its read step, and a test process's imports are half again a script's:
    frozen, each collection walks what the tests made, not the imports again (~0.3 s a window,
    about 20 s of the suite). What vaebench does is unchanged; only this process's objects are
    frozen, and a tensor made at import time is no longer among the live ones it reads (no
    test counts those: they compare with what the process held before)."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    counted = [item for item in items if item.name == COUNTED_IN_BACKGROUND]
    items[:] = [item for item in items if item not in counted] + counted  # last: it waits least
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _count_in_background(config: pytest.Config) -> None:
    from bench.instructions.count import missing_tool

    if missing_tool() is not None:
        return  # the test skips itself with the reason
    folder = Path(tempfile.mkdtemp(prefix="vaebench-test-counts-"))
    cmd = [sys.executable, "-m", "bench", "instructions", "--no-progress",
           "--workload", f"{ROOT / 'tests' / 'counted_workload.py'}:make", "--data-dir", str(folder),
           "--limit", "100", "--repeats", "2", "--fetches", "10", "--json", str(folder / "counts.json")]
    with open(folder / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def done() -> None:  # the exit code into a file: a worker process waits for that file
        write_atomic(folder / "exit.txt", str(proc.wait()))

    threading.Thread(target=done, daemon=True).start()
    config.stash[_BACKGROUND] = proc
    os.environ[FOLDER_ENV] = str(folder)  # before xdist starts its workers, which inherit it


def pytest_unconfigure(config: pytest.Config) -> None:
    if _BACKGROUND in config.stash:
        proc = config.stash[_BACKGROUND]
        if proc.poll() is None:  # the test did not run to the end (-x, Ctrl-C): stop Valgrind
            proc.kill()
            proc.wait()
        shutil.rmtree(os.environ.pop(FOLDER_ENV), ignore_errors=True)


@pytest.fixture
def counted_in_background(pytestconfig: pytest.Config) -> tuple[int, Path, str]:
    """(exit code, the JSON it wrote, its output) of the background `bench instructions`."""
    if not os.environ.get(FOLDER_ENV):
        _count_in_background(pytestconfig)
    folder = Path(os.environ[FOLDER_ENV])
    deadline = time.monotonic() + 900
    while not (folder / "exit.txt").is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    code = int((folder / "exit.txt").read_text())
    return code, folder / "counts.json", (folder / "log.txt").read_text()
