"""MNIST files: the IDX round trip through torchvision, the generated set, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vae.data import DataError, generate_digits, load_mnist, raw_files, write_synthetic_mnist
from vae.idx import IdxError, check_idx, write_idx


def test_idx_round_trip_through_torchvision(tmp_path: Path):
    from torchvision.datasets import MNIST

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (13, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 13, dtype=np.uint8)
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    for train in (True, False):  # torchvision wants both splits present
        images_path, labels_path = raw_files(tmp_path, train)
        write_idx(images_path, images)
        write_idx(labels_path, labels)
    assert check_idx(images_path, 3) == (13, 28, 28)
    ds = MNIST(str(tmp_path), train=False, download=False)
    np.testing.assert_array_equal(ds.data.numpy(), images)
    np.testing.assert_array_equal(ds.targets.numpy(), labels)


def test_generated_digits_are_deterministic_and_mnist_shaped():
    a_images, a_labels = generate_digits(50, seed=3, progress=False)
    b_images, b_labels = generate_digits(50, seed=3, progress=False)
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_labels, b_labels)
    assert a_images.shape == (50, 28, 28) and a_images.dtype == np.uint8
    assert set(np.unique(a_labels)) <= set(range(10))
    # Digit-like: a dark background with bright strokes, not noise.
    assert (a_images == 0).mean() > 0.5
    assert a_images.max() > 200
    # Different digits look different: mean images of 0s and 1s differ clearly.
    images, labels = generate_digits(400, seed=4, progress=False)
    zero, one = images[labels == 0].mean(0), images[labels == 1].mean(0)
    assert np.abs(zero - one).mean() > 10


def test_auto_generates_once_and_reads_it_back(tmp_path: Path):
    write_synthetic_mnist(tmp_path / "synthetic", sizes={"train": 30, "t10k": 20}, progress=False)
    split = load_mnist(tmp_path, train=True, progress=False)
    assert split.source == "synthetic" and len(split) == 30
    assert split.images.shape == (30, 28, 28) and split.labels.dtype == np.int64
    assert len(load_mnist(tmp_path, train=True, limit=7, progress=False)) == 7


def test_auto_prefers_real_mnist_files(tmp_path: Path):
    write_synthetic_mnist(tmp_path, sizes={"train": 10, "t10k": 10}, progress=False)  # as MNIST/raw
    split = load_mnist(tmp_path, train=False, progress=False)
    assert split.source == "mnist"
    assert split.root == tmp_path


def test_truncated_file_names_the_file_and_the_fix(tmp_path: Path):
    root = tmp_path / "synthetic"
    write_synthetic_mnist(root, sizes={"train": 10, "t10k": 10}, progress=False)
    images_path, _ = raw_files(root, train=True)
    images_path.write_bytes(images_path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated.*delete"):
        load_mnist(tmp_path, train=True, progress=False)


def test_mismatched_lengths_are_reported(tmp_path: Path):
    root = tmp_path / "synthetic"
    write_synthetic_mnist(root, sizes={"train": 10, "t10k": 10}, progress=False)
    _, labels_path = raw_files(root, train=True)
    write_idx(labels_path, np.zeros(9, dtype=np.uint8))
    with pytest.raises(DataError, match=r"10 images but .* 9 labels"):
        load_mnist(tmp_path, train=True, progress=False)


def test_bad_magic_is_reported(tmp_path: Path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12)
    with pytest.raises(IdxError, match="not an unsigned-byte IDX"):
        check_idx(path, 3)


def test_missing_real_mnist_says_how_to_get_it(tmp_path: Path):
    with pytest.raises(DataError, match="--download"):
        load_mnist(tmp_path, train=True, dataset="mnist", progress=False)


def test_data_dir_that_is_a_file(tmp_path: Path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(DataError, match="is a file"):
        load_mnist(path, train=True, progress=False)


def test_data_dir_that_cannot_be_created(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="writable --data-dir"):
        load_mnist(blocker / "sub", train=True, progress=False)


def test_gz_files_are_unpacked(tmp_path: Path):
    import gzip

    write_synthetic_mnist(tmp_path, sizes={"train": 10, "t10k": 10}, progress=False)
    for train in (True, False):
        for path in raw_files(tmp_path, train):
            with open(path, "rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            path.unlink()
    assert len(load_mnist(tmp_path, train=True, progress=False)) == 10
