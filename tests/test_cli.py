"""`python -m vae train` as a user runs it: exit codes and messages, in-process through
``vae.cli.main`` (the entry point itself, `python -m vae train` in a process of its own, is
covered by tests/test_wandb.py, which needs the process for W&B's own environment)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import assert_clean_error, run_vae


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["--pipeline", "fast"], ["invalid choice: 'fast'", "naive", "optimized"]),
        (["--epochs", "0"], ["--epochs", "positive"]),
        (["--batch-size", "-5"], ["--batch-size", "positive"]),
        (["--lr", "0"], ["--lr", "positive"]),
        (["--limit", "50"], ["--limit 50 is smaller than one batch"]),
    ],
)
def test_bad_arguments(tmp_path: Path, data_root: Path, args: list[str], phrases: list[str]):
    out = tmp_path / "out"
    proc = run_vae("train", "--data-dir", data_root, "--out", out, *args)
    assert_clean_error(proc, *phrases)
    assert not out.exists(), "nothing may be written on bad input"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu(tmp_path: Path, data_root: Path):
    proc = run_vae("train", "--device", "cuda", "--data-dir", data_root, "--out", tmp_path / "o")
    assert_clean_error(proc, "no CUDA device", "--device cpu")
    assert not (tmp_path / "o").exists()


def test_corrupt_data_file(tmp_path: Path):
    from vae.data import raw_files, write_synthetic_mnist

    root = tmp_path / "data"
    write_synthetic_mnist(root / "synthetic", sizes={"train": 100, "t10k": 100}, progress=False)
    images, _ = raw_files(root / "synthetic", train=False)
    images.write_bytes(images.read_bytes()[:500])
    proc = run_vae("train", "--data-dir", root, "--out", tmp_path / "o")
    assert_clean_error(proc, "t10k-images-idx3-ubyte", "truncated", "delete")
    assert not (tmp_path / "o").exists()


def test_data_dir_is_a_file(tmp_path: Path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    proc = run_vae("train", "--data-dir", blocker, "--out", tmp_path / "o")
    assert_clean_error(proc, "is a file")


def test_existing_run_is_not_overwritten(tmp_path: Path, data_root: Path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "train.log").write_text("precious")
    proc = run_vae("train", "--data-dir", data_root, "--out", out)
    assert_clean_error(proc, "--overwrite")
    assert (out / "train.log").read_text() == "precious"


def test_help_explains_the_options():
    proc = run_vae("train", "--help")
    assert proc.returncode == 0
    for option in ("--pipeline", "--dataset", "--download", "--limit", "--device", "--threads"):
        assert option in proc.stdout


@pytest.mark.slow
def test_train_writes_images_logs_and_tensorboard(tmp_path: Path, data_root: Path):
    out = tmp_path / "run"
    proc = run_vae("train", "--data-dir", data_root, "--out", out, "--epochs", "2",
                   "--limit", "300", "--pipeline", "naive", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    for name in ("orig_data.png", "reconstructions.png", "generated_samples.png", "train.log"):
        assert (out / name).is_file(), name
    log = (out / "train.log").read_text()
    assert "epoch 2/2" in log and "samples/s" in log and "synthetic train (300 images" in log
    assert " INFO " in log and "vae.fit" in log  # timestamps, levels and module names

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"), size_guidance={"histograms": 0}).Reload()
    tags = events.Tags()
    assert {"loss/train", "loss/test"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss/train")] == [1, 2]
    assert any(t.startswith("grads/") for t in tags["histograms"])
    assert any(t.startswith("weights/") for t in tags["histograms"])
    assert {"images/orig_data", "images/reconstructions"} <= set(tags["images"])
    assert tags["graph"]


def test_two_runs_in_one_process_keep_their_own_logs(tmp_path: Path, data_root: Path):
    for name in ("one", "two"):
        proc = run_vae("train", "--data-dir", data_root, "--out", tmp_path / name, "--epochs", "1",
                       "--limit", "100", "--no-progress", "--pipeline", "batched")
        assert proc.returncode == 0, proc.stderr
    first, second = ((tmp_path / n / "train.log").read_text() for n in ("one", "two"))
    assert str(tmp_path / "one") in first and str(tmp_path / "two") not in first
    assert str(tmp_path / "two") in second
