"""The whole training run behind ``python -m vae train``: data, epochs, logs, TensorBoard.

``TrainConfig`` holds every knob with its default (the course's values); ``fit`` runs it and
writes into ``out``: ``train.log`` (set up by the CLI), ``tb/`` (TensorBoard events) and the
three image grids.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from vae.data import MnistSplit
from vae.device import describe, synchronize
from vae.model import VAE
from vae.pipelines import Pipeline, make_pipeline
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


def _progress_callback(bar: tqdm, every: int = 20):
    """Update the bar per step but read the loss (a device sync) only every ``every`` steps."""
    state = {"steps": 0}

    def on_step(loss: torch.Tensor, n: int) -> None:
        state["steps"] += 1
        bar.update(n)
        if state["steps"] % every == 0:
            bar.set_postfix(loss=f"{loss.item() / n:.1f}")

    return on_step


def _log_histograms(writer: SummaryWriter, model: VAE, epoch: int) -> None:
    for name, param in model.named_parameters():
        writer.add_histogram(f"weights/{name}", param.detach().cpu(), epoch)
        if param.grad is not None:
            writer.add_histogram(f"grads/{name}", param.grad.detach().cpu(), epoch)


def fit(config: TrainConfig, train: MnistSplit, test: MnistSplit, device: torch.device,
        out: Path, *, progress: bool = True) -> FitResult:
    """Train ``config.epochs`` epochs, evaluating on ``test`` after each; log everything."""
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

    writer = SummaryWriter(str(out / "tb"))
    first = next(iter(test_data))
    with warnings.catch_warnings():
        # Tracing the sampling step is nondeterministic by design; the graph is still right.
        warnings.simplefilter("ignore")
        writer.add_graph(model, first[:1])
    result = FitResult([], [], [], {})
    for epoch in range(1, config.epochs + 1):
        with tqdm(total=train_data.num_samples, desc=f"epoch {epoch}/{config.epochs}",
                  unit="img", disable=not progress, leave=False) as bar:
            synchronize(device)
            start = time.perf_counter()
            train_loss = train_epoch(model, train_data, optimizer, on_step=_progress_callback(bar),
                                     loss_fn=loss_fn, update_fn=update_fn)
            synchronize(device)
            seconds = time.perf_counter() - start
        test_loss = evaluate(model, test_data)
        rate = train_data.num_samples / seconds
        log.info("epoch %d/%d  train loss %.2f  test loss %.2f  %.2f s  %.0f samples/s",
                 epoch, config.epochs, train_loss, test_loss, seconds, rate)
        writer.add_scalar("loss/train", train_loss, epoch)
        writer.add_scalar("loss/test", test_loss, epoch)
        writer.add_scalar("perf/epoch_seconds", seconds, epoch)
        writer.add_scalar("perf/samples_per_second", rate, epoch)
        _log_histograms(writer, model, epoch)
        result.train_losses.append(train_loss)
        result.test_losses.append(test_loss)
        result.epoch_seconds.append(seconds)

    shown = first[:100]
    result.images = save_images(model, shown, out, seed=config.seed)
    with torch.no_grad():
        model.eval()
        grids = {"orig_data": shown, "reconstructions": model(shown)[0],
                 "generated_samples": model.sample(len(shown))}
    for tag, images in grids.items():
        writer.add_image(f"images/{tag}", make_grid(images.view(-1, 1, 28, 28).cpu(), nrow=10))
    hparams = {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
    hparams.update(device=str(device), dataset=train.source, train_samples=len(train))
    writer.add_hparams(hparams, {"hparam/train_loss": result.train_losses[-1],
                                 "hparam/test_loss": result.test_losses[-1]}, run_name=".")
    writer.close()
    for name, path in result.images.items():
        log.info("wrote %s (%s)", path, name)
    return result
