"""The training CLI as a hostile user meets it: a diverging loss, the debugger, anomaly mode,
damaged and half-written data, a full disk, --overwrite, two runs into one --out, someone
else's folder, Ctrl-C -- and --help before torch. In-process through ``vae.cli.main``."""

from __future__ import annotations

import errno
import gzip
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plumbing.files import out_lock
from tests.helpers import assert_clean_error, run_vae
from vae import cli
from vae.guard import LossGuard, NonFiniteLoss

SMALL = ("--epochs", "1", "--limit", "100", "--no-progress", "--pipeline", "batched")


def train(data_root: Path, out: Path, *args: str):
    return run_vae("train", "--data-dir", data_root, "--out", out, *SMALL, *args)


def test_help_and_argument_errors_answer_before_torch_is_imported():
    code = ("import sys; from vae.cli import main\n"
            "for argv in (['train', '--help'], ['train', '--lr', 'inf'], ['train', '--seed', '-1']):\n"
            "    try: main(argv)\n"
            "    except SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--trainer" in proc.stdout and "--detect-anomaly" in proc.stdout
    assert "must be a positive finite number, got inf" in proc.stderr
    assert "between 0 and 2**32 - 1" in proc.stderr


@pytest.mark.parametrize(("args", "phrase"), [
    (["--lr", "nan"], "positive finite number"),
    (["--seed", str(2**40)], "between 0 and 2**32 - 1"),
    (["--profiler", "simple"], "add --trainer lightning"),
    (["--patience", "2"], "add --trainer lightning"),
    (["--trainer", "lightning", "--compile"], "plain trainer"),
])
def test_options_that_do_not_fit_are_refused(tmp_path: Path, data_root: Path, args, phrase):
    proc = train(data_root, tmp_path / "out", *args)
    assert_clean_error(proc, phrase)
    assert not (tmp_path / "out").exists()


def test_a_missing_extra_names_the_pip_command(tmp_path: Path, data_root: Path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    proc = train(data_root, tmp_path / "out", "--logger", "wandb")
    assert_clean_error(proc, "pip install -e '.[wandb]'")


def test_a_diverging_run_stops_with_exit_3_naming_the_step(tmp_path: Path, data_root: Path):
    out = tmp_path / "run"
    proc = run_vae("train", "--data-dir", data_root, "--out", out, "--epochs", "3", "--limit", "300",
                   "--no-progress", "--pipeline", "batched", "--lr", "10")
    assert proc.returncode == cli.NON_FINITE, proc.stderr
    assert "Traceback" not in proc.stderr
    line = next(x for x in proc.stderr.splitlines() if "stopped:" in x)
    assert "at step" in line and "of epoch 1" in line and "last finite loss per sample:" in line
    assert "lower --lr" in line and "--detect-anomaly" in line
    log = (out / "train.log").read_text()
    assert "stopped:" in log and "Data set:" in log  # train.log says why, from the start
    assert (out / "tb").is_dir()  # what was written is kept


def test_the_guard_names_the_exact_step_even_when_it_reads_in_windows():
    guard = LossGuard(torch.device("cpu"), every=5)
    losses = [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, float("nan"), 3.0]
    with pytest.raises(NonFiniteLoss) as caught:
        for value in losses:
            guard(torch.tensor(value * 100), 100)
        guard.check()
    assert caught.value.step == 7 and caught.value.last_finite == pytest.approx(5.0)


@pytest.fixture
def post_mortem(monkeypatch):
    import pdb

    calls = []
    monkeypatch.setattr(pdb, "post_mortem", lambda tb=None: calls.append(tb))
    return calls


def test_pdb_opens_the_debugger_where_the_error_happened(tmp_path, data_root, monkeypatch, post_mortem):
    import vae.fit

    def broken(*args, **kwargs):
        raise ValueError("a bug in the training loop")

    monkeypatch.setattr(vae.fit, "fit", broken)
    proc = train(data_root, tmp_path / "run", "--pdb")
    assert proc.returncode == 1
    assert len(post_mortem) == 1 and post_mortem[0].tb_frame is not None
    frames = []
    tb = post_mortem[0]
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "broken"  # the debugger opens in the frame that raised
    assert "a bug in the training loop" in (tmp_path / "run" / "train.log").read_text()


def test_without_pdb_an_error_is_raised_not_debugged(tmp_path, data_root, monkeypatch, post_mortem):
    import vae.fit

    monkeypatch.setattr(vae.fit, "fit", lambda *a, **k: (_ for _ in ()).throw(ValueError("bug")))
    with pytest.raises(ValueError, match="bug"):
        cli.main(["train", "--data-dir", str(data_root), "--out", str(tmp_path / "run"), *SMALL])
    assert post_mortem == []


def test_pdb_also_opens_on_a_non_finite_loss(tmp_path, data_root, post_mortem):
    proc = train(data_root, tmp_path / "run", "--lr", "10", "--limit", "300", "--epochs", "3", "--pdb")
    assert proc.returncode == cli.NON_FINITE and len(post_mortem) == 1


def test_detect_anomaly_is_on_while_training(tmp_path, data_root, monkeypatch):
    import vae.fit

    seen = []
    monkeypatch.setattr(vae.fit, "fit", lambda *a, **k: seen.append(torch.is_anomaly_enabled()))
    assert train(data_root, tmp_path / "a", "--detect-anomaly").returncode == 0
    assert train(data_root, tmp_path / "b").returncode == 0
    assert seen == [True, False] and not torch.is_anomaly_enabled()


def _raw(root: Path) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    return raw


def test_a_damaged_gz_is_one_line_and_leaves_nothing_half_written(tmp_path: Path, data_root: Path):
    from vae.data import raw_files

    root = tmp_path / "data"
    raw = _raw(root)
    source = data_root / "synthetic"
    for train_ in (True, False):
        for path in raw_files(source, train_):
            (raw / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
    good = (raw / "train-images-idx3-ubyte.gz").read_bytes()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])  # cut short
    out = tmp_path / "out"
    proc = run_vae("train", "--data-dir", root, "--dataset", "mnist", "--out", out, *SMALL)
    assert_clean_error(proc, "train-images-idx3-ubyte.gz is damaged or cut short")
    assert not out.exists(), "--out must not be created when the data check fails"
    assert not (raw / "train-images-idx3-ubyte").exists()
    assert not list(raw.glob("*.partial"))
    (raw / "train-images-idx3-ubyte.gz").write_bytes(good)  # the fix the message names works
    assert train(root, out, "--dataset", "mnist").returncode == 0


def test_a_full_disk_while_generating_data_is_one_line(tmp_path: Path, monkeypatch):
    import vae.idx

    real_open = open

    def full(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode and str(path).endswith(".partial"):
            handle.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return handle

    monkeypatch.setattr(vae.idx, "open", full, raising=False)
    proc = run_vae("train", "--data-dir", tmp_path / "data", "--out", tmp_path / "out", *SMALL)
    assert_clean_error(proc, "No space left on device", "free some space")
    assert not list((tmp_path / "data").rglob("*.partial"))


def test_a_full_disk_while_writing_the_run_is_one_line(tmp_path, data_root, monkeypatch):
    import vae.fit

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vae.fit, "save_images", full)
    out = tmp_path / "run"
    proc = train(data_root, out)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot write into" in proc.stderr and "No space left on device" in proc.stderr
    assert "No space left" in (out / "train.log").read_text()


def test_overwrite_replaces_the_run_as_a_whole(tmp_path: Path, data_root: Path):
    out = tmp_path / "run"
    assert train(data_root, out).returncode == 0
    stale = out / "tb" / "events.out.tfevents.0.old-run"
    stale.write_bytes(b"an earlier run's curves")
    (out / "checkpoints").mkdir()
    (out / "notes.txt").write_text("mine")
    assert train(data_root, out, "--overwrite").returncode == 0
    assert not stale.exists() and not (out / "checkpoints").exists()
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert "--overwrite: removed the earlier run's" in (out / "train.log").read_text()


def test_a_second_run_into_an_out_in_use_is_refused(tmp_path: Path, data_root: Path):
    out = tmp_path / "run"
    assert train(data_root, out).returncode == 0
    with out_lock(out, cli.LOCK):  # another run holds it
        proc = train(data_root, out, "--overwrite")
    assert_clean_error(proc, "is in use by another run")
    assert (out / "orig_data.png").is_file()


def test_someone_elses_folder_is_not_written_into(tmp_path: Path, data_root: Path):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    for extra in ([], ["--overwrite"]):
        assert_clean_error(train(data_root, out, *extra), "not a training run")
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_train_log_has_the_data_the_limit_warning_and_an_interrupt(tmp_path, data_root, monkeypatch):
    import vae.fit

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vae.fit, "fit", interrupted)
    out = tmp_path / "run"
    proc = run_vae("train", "--data-dir", data_root, "--out", out, "--limit", "100000", "--no-progress")
    assert proc.returncode == cli.INTERRUPTED and "Traceback" not in proc.stderr
    log = (out / "train.log").read_text()
    assert "Data set: synthetic train" in log
    assert "--limit 100000 is more than the 600 training samples" in log
    assert "Interrupted by the user" in log


def test_ctrl_c_during_start_up_is_one_line(tmp_path, data_root, monkeypatch):
    import vae.data

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vae.data, "load_mnist", interrupted)
    proc = train(data_root, tmp_path / "run")
    assert proc.returncode == cli.INTERRUPTED
    assert proc.stderr.strip() == "interrupted; the files written so far are kept"
    assert not (tmp_path / "run").exists()


def test_the_torch_free_choices_match_what_implements_them():
    from vae import choices
    from vae.data import DATASETS
    from vae.pipelines import PIPELINES

    assert tuple(PIPELINES) == choices.PIPELINE_NAMES
    assert tuple(n for n, p in PIPELINES.items() if p.uses_dataloader) == choices.DATALOADER_PIPELINES
    assert choices.DATASETS == DATASETS
