"""The Lightning trainer: the same losses as the plain loop, checkpoints, early stopping, and
Lightning's profilers read back by the tools that open them (pstats/snakeviz, TensorBoard's
profiler plugin). Needs the [lightning] extra, which `nox -s tests` installs."""

from __future__ import annotations

import importlib.util
import json
import pstats
from pathlib import Path

import pytest
import torch

from tests.helpers import run_vae

# Checked, not imported, at collection: every test worker collects every file, and importing
# lightning takes 2.5 s (8-10 s on a slower day) in each worker, not only the one running these.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("lightning") is None,
                                                   reason="the [lightning] extra is not installed")]


def test_lightning_steps_give_the_plain_loops_losses(train_split):
    """Same seed, same data, same model: the first steps' losses agree (rtol 1e-5)."""
    import lightning as L

    from vae.fit import TrainConfig
    from vae.lightning_fit import LitVAE, quiet_lightning
    from vae.model import VAE
    from vae.pipelines import make_pipeline
    from vae.speedups import make_optimizer
    from vae.train import train_step

    steps = 5
    config = TrainConfig(pipeline="batched", seed=3)
    torch.manual_seed(config.seed)
    model = VAE()
    optimizer = make_optimizer(model.parameters(), config.lr)
    data = iter(make_pipeline("batched", train_split, batch_size=100, seed=config.seed))
    plain = [train_step(model, next(data), optimizer).item() for _ in range(steps)]

    class Record(L.Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.losses.append(outputs["loss"].item())

    quiet_lightning()
    torch.manual_seed(config.seed)
    lit = LitVAE(config)
    record = Record()
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, accelerator="cpu",
                        callbacks=[record])
    trainer.fit(lit, train_dataloaders=make_pipeline("batched", train_split, batch_size=100,
                                                     seed=config.seed))
    assert record.losses == pytest.approx(plain, rel=1e-5)
    assert plain[-1] < plain[0]


def _lightning_run(data_root: Path, out: Path, *args: str):
    return run_vae("train", "--trainer", "lightning", "--data-dir", data_root, "--out", out,
                   "--limit", "200", "--no-progress", "--pipeline", "batched", *args)


def test_lightning_run_writes_what_the_plain_loop_writes_plus_checkpoints(tmp_path, data_root):
    out = tmp_path / "run"
    proc = _lightning_run(data_root, out, "--epochs", "2", "--profiler", "advanced")
    assert proc.returncode == 0, proc.stderr
    for name in ("orig_data.png", "reconstructions.png", "generated_samples.png", "train.log"):
        assert (out / name).is_file(), name
    log = (out / "train.log").read_text()
    assert "Training with Lightning" in log and "epoch 2/2" in log and "test loss" in log
    ckpts = {p.name for p in (out / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in ckpts and any(n.startswith("epoch") for n in ckpts)
    best = torch.load(next(p for p in (out / "checkpoints").glob("epoch*.ckpt")), weights_only=False)
    assert "val_loss" in str(best["callbacks"]) and best["state_dict"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(out / "tb")).Reload().Tags()
    assert {"loss/train", "loss/test"} <= set(tags["scalars"]) and "images/orig_data" in tags["images"]

    # the advanced profiler: one cProfile .prof per hook, each opens in pstats (snakeviz's reader)
    profs = list((out / "profiler").glob("*.prof"))
    assert profs, list((out / "profiler").iterdir())
    step = [p for p in profs if "training_step" in p.name]
    assert step and pstats.Stats(str(step[0])).total_calls > 0
    assert (out / "profiler" / "fit-advanced.txt").is_file()


def test_lightning_pytorch_profiler_traces_open_in_tensorboards_profiler(tmp_path, data_root):
    from torch_tb_profiler import consts

    out = tmp_path / "run"
    proc = _lightning_run(data_root, out, "--epochs", "2", "--profiler", "pytorch", "--limit", "600")
    assert proc.returncode == 0, proc.stderr
    traces = [p for p in (out / "profiler").iterdir() if consts.WORKER_PATTERN.match(p.name)]
    assert traces, list((out / "profiler").iterdir())  # the plugin lists exactly these names
    events = json.loads(next(p for p in traces if "training_step" in p.name).read_text())["traceEvents"]
    assert any(str(e.get("name", "")).startswith("aten::addmm") for e in events)


def test_early_stopping_stops_when_val_loss_does_not_improve(tmp_path, data_root):
    out = tmp_path / "run"
    # a learning rate too small to change float32 weights: val_loss only moves with the sampling
    proc = _lightning_run(data_root, out, "--epochs", "8", "--patience", "1", "--lr", "1e-12")
    assert proc.returncode == 0, proc.stderr
    log = (out / "train.log").read_text()
    assert "EarlyStopping: val_loss did not improve for 1 epochs" in log
    assert "epoch 8/8" not in log


def test_the_lightning_workload_drives_both_loops_through_the_same_hand_off(data_root):
    from bench.measure.clock import time_steps
    from bench.workload import Context, variants_of

    ctx = Context(device=torch.device("cpu"), data_dir=data_root, limit=300)
    variants = variants_of("bench.workloads.lightning:make", ctx)
    assert list(variants) == ["plain", "lightning"]
    for name in variants:
        work = variants.build(name)
        snapshot = work.state()
        timing = time_steps(work, 4)  # more than one epoch of 3 batches: the stream restarts
        assert len(timing.steps) == 4 and set(timing.parts) == {"data", "step"}
        before = snapshot["model"]
        after = work.model.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before), f"{name} did not train"
        work.restore(snapshot)
        assert all(torch.equal(before[k], work.model.state_dict()[k]) for k in before)
        work.close()
        assert not work._thread.is_alive()


def test_ctrl_c_in_a_lightning_run_is_an_interrupt_not_exit_1(tmp_path, data_root, monkeypatch):
    from vae import cli
    from vae.model import VAE

    calls = {"n": 0}
    real = VAE.forward

    def forward(self, x):
        calls["n"] += 1
        if calls["n"] == 3:  # Ctrl-C in the middle of the first epoch
            raise KeyboardInterrupt
        return real(self, x)

    monkeypatch.setattr(VAE, "forward", forward)
    out = tmp_path / "run"
    proc = _lightning_run(data_root, out, "--epochs", "2")
    assert proc.returncode == cli.INTERRUPTED, proc.stderr[-2000:]
    assert "Interrupted by the user" in (out / "train.log").read_text()
