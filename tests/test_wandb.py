"""Weights & Biases offline: no API key, no network, everything under --out, read back from the
files it wrote (with W&B's own reader), the image grids not black. Needs the [wandb] extra."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# checked, not imported: every worker collects this file; W&B runs in the process it starts
pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                                                   reason="the [wandb] extra is not installed")]


def test_wandb_offline_logs_config_losses_images_and_histograms(tmp_path: Path, data_root: Path):
    out = tmp_path / "run"
    home = tmp_path / "home"  # no ~/.netrc, no settings: a machine that never logged in
    home.mkdir()
    env = {"HOME": str(home), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
           "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vae", "train", "--logger", "both", "--data-dir",
                           str(data_root), "--out", str(out), "--epochs", "2", "--limit", "200",
                           "--no-progress", "--pipeline", "batched", "--lr", "3e-3"],
                          capture_output=True, text=True, env=env, timeout=240, cwd=Path.cwd())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.perf_counter() - start < 200  # never waits for a network
    assert "W&B: offline run in" in proc.stderr and "wandb sync" in proc.stderr
    assert not (home / ".cache" / "wandb").exists() and not (home / ".config" / "wandb").exists()
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert (out / "tb").is_dir()  # --logger both: TensorBoard too

    inspect = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json",
                              str(runs[0])], capture_output=True, text=True, timeout=120, env=env)
    assert inspect.returncode == 0, inspect.stderr
    records = [json.loads(line) for line in inspect.stdout.splitlines() if line.startswith("{")]
    text = json.dumps(records)
    for key in ("loss/train", "loss/test", "weights/", "grads/", "images/reconstructions"):
        assert key in text, key
    assert '"lr"' in text and '"batch_size"' in text and '"pipeline"' in text  # the config

    pngs = list((runs[0] / "files" / "media").rglob("*.png"))
    assert len(pngs) == 3
    for png in pngs:  # the uint8 trap: a float grid would come out all black
        assert np.asarray(Image.open(png)).max() > 100, png
