"""The whole training run behind ``python -m vae train``: data, epochs, logs, TensorBoard.

``TrainConfig`` holds every knob with its default (the course's values); ``fit`` runs it and
writes into ``out``: ``train.log`` (set up by the CLI), ``tb/`` (TensorBoard events) and the
three image grids.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from plumbing.devices import describe, synchronize
from plumbing.progress import bar as progress_bar
from vae.data import MnistSplit
from vae.guard import LossGuard, is_nan_input_error
from vae.model import VAE
from vae.pipelines import Pipeline, make_pipeline
from vae.runlog import RunLog
from vae.speedups import make_optimizer, step_functions
from vae.train import evaluate, save_images, train_epoch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    pipeline: str = "optimized"  # a name of vae.pipelines.PIPELINES
    epochs: int = 5
    batch_size: int = 100
    lr: float = 1e-3  # Adam
    hidden_dim: int = 400
    latent_dim: int = 20
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    optimizer_impl: str = "default"  # Adam: default | foreach | fused (vae.speedups)
    compile: str = "none"  # none | model | step | cudagraphs (vae.speedups.step_functions)
    num_workers: int = 0  # DataLoader workers (naive and tensor pipelines)


@dataclass
class FitResult:
    train_losses: list[float]
    test_losses: list[float]
    epoch_seconds: list[float]
    images: dict[str, Path]


def _progress_callback(bar: tqdm, guard: LossGuard, every: int = 20):
    """Update the bar per step, hand each loss to the guard; read the loss for the bar (a
    device sync) only every ``every`` steps."""
    state = {"steps": 0}

    def on_step(loss: torch.Tensor, n: int) -> None:
        state["steps"] += 1
        bar.update(n)
        guard(loss, n)
        if state["steps"] % every == 0:
            bar.set_postfix(loss=f"{loss.item() / n:.1f}")

    return on_step


def hyperparameters(config: TrainConfig, device: torch.device, train: MnistSplit) -> dict[str, Any]:
    """Every knob of the run, as TensorBoard's HParams tab and W&B's config show them."""
    hparams = {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
    hparams.update(device=str(device), dataset=train.source, train_samples=len(train))
    return hparams


def log_epoch(runlog: RunLog, model: torch.nn.Module, epoch: int, epochs: int, train_loss: float,
              test_loss: float, seconds: float, samples: int) -> None:
    """One epoch's line in train.log and its numbers in TensorBoard / W&B (both trainers)."""
    rate = samples / seconds
    log.info("epoch %d/%d  train loss %.2f  test loss %.2f  %.2f s  %.0f samples/s",
             epoch, epochs, train_loss, test_loss, seconds, rate)
    runlog.scalars({"loss/train": train_loss, "loss/test": test_loss, "perf/epoch_seconds": seconds,
                    "perf/samples_per_second": rate}, epoch)
    runlog.histograms(model, epoch)


def finish(runlog: RunLog, model: VAE, shown: torch.Tensor, out: Path, seed: int, step: int,
           hparams: dict[str, Any], metrics: dict[str, float]) -> dict[str, Path]:
    """The three image grids (PNG files, TensorBoard, W&B) and the run's hyperparameters."""
    images = save_images(model, shown, out, seed=seed)
    with torch.no_grad():
        model.eval()
        runlog.images({"orig_data": shown, "reconstructions": model(shown)[0],
                       "generated_samples": model.sample(len(shown))}, step)
    runlog.hparams(hparams, metrics)
    for name, path in images.items():
        log.info("wrote %s (%s)", path, name)
    return images


def fit(config: TrainConfig, train: MnistSplit, test: MnistSplit, device: torch.device,
        out: Path, *, progress: bool = True, logger: str = "tensorboard") -> FitResult:
    """Train ``config.epochs`` epochs, evaluating on ``test`` after each; log everything.

    Raises :class:`vae.guard.NonFiniteLoss` at the first step whose loss is not finite.
    """
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    model = VAE(hidden_dim=config.hidden_dim, latent_dim=config.latent_dim).to(device)
    optimizer = make_optimizer(model.parameters(), config.lr, config.optimizer_impl)
    loss_fn, update_fn = step_functions(model, optimizer, config.compile)
    train_data: Pipeline = make_pipeline(config.pipeline, train, batch_size=config.batch_size,
                                         device=device, seed=config.seed,
                                         num_workers=config.num_workers)
    # Evaluation always uses the cheapest exact rung; the choice under test is the training one.
    test_data = make_pipeline("batched", test, batch_size=config.batch_size, device=device,
                              seed=config.seed + 1)
    log.info("Training %s on %s (%s), %d threads; %s; test: %s", type(train_data).__name__,
             device, describe(device), torch.get_num_threads(), train.description,
             test.description)

    hparams = hyperparameters(config, device, train)
    runlog = RunLog(out, logger, hparams)
    try:
        return _epochs(config, model, optimizer, loss_fn, update_fn, train_data, test_data, device,
                       out, progress, runlog, hparams)
    finally:
        runlog.close()


def _epochs(config: TrainConfig, model: VAE, optimizer: torch.optim.Optimizer, loss_fn: Any,
            update_fn: Any, train_data: Pipeline, test_data: Pipeline, device: torch.device,
            out: Path, progress: bool, runlog: RunLog, hparams: dict[str, Any]) -> FitResult:
    first = next(iter(test_data))
    runlog.graph(model, first[:1])
    result = FitResult([], [], [], {})
    guard = LossGuard(device)
    for epoch in range(1, config.epochs + 1):
        guard.epoch = epoch
        with progress_bar(total=train_data.num_samples, desc=f"epoch {epoch}/{config.epochs}",
                  unit="img", disable=not progress, leave=False) as bar:
            synchronize(device)
            start = time.perf_counter()
            try:
                train_loss = train_epoch(model, train_data, optimizer,
                                         on_step=_progress_callback(bar, guard),
                                         loss_fn=loss_fn, update_fn=update_fn)
                guard.check()
            except RuntimeError as exc:
                if is_nan_input_error(exc):
                    raise guard.output_is_nan() from exc
                raise
            synchronize(device)
            seconds = time.perf_counter() - start
        test_loss = evaluate(model, test_data)
        log_epoch(runlog, model, epoch, config.epochs, train_loss, test_loss, seconds,
                  train_data.num_samples)
        result.train_losses.append(train_loss)
        result.test_losses.append(test_loss)
        result.epoch_seconds.append(seconds)
    result.images = finish(runlog, model, first[:100], out, config.seed, config.epochs, hparams,
                           {"hparam/train_loss": result.train_losses[-1],
                            "hparam/test_loss": result.test_losses[-1]})
    return result
