"""The same training run through PyTorch Lightning: ``python -m vae train --trainer lightning``.

:class:`LitVAE` is the course VAE as a ``LightningModule`` (``training_step``,
``validation_step`` logging ``val_loss``, ``configure_optimizers``), fed by the very same
pipelines as the plain loop (Lightning takes any iterable with a length). It writes what the
plain loop writes -- ``train.log`` lines, TensorBoard (or W&B) through :class:`vae.runlog.RunLog`,
the three image grids -- plus ``checkpoints/`` from ``ModelCheckpoint(monitor="val_loss")``,
stops early with ``EarlyStopping(monitor="val_loss", patience=...)``, and with ``profiler``
runs Lightning's own profiler into ``profiler/``.

Lightning is the ``[lightning]`` extra; this module is imported only when it is asked for
(``import lightning`` alone takes 8-10 s here).
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from vae.data import MnistSplit
from vae.fit import FitResult, TrainConfig, finish, hyperparameters, log_epoch
from vae.guard import LossGuard, is_nan_input_error
from vae.model import VAE, model_loss
from vae.pipelines import make_pipeline
from vae.runlog import RunLog
from vae.speedups import make_optimizer

log = logging.getLogger(__name__)


def quiet_lightning() -> None:
    """Lightning's tips and warnings that say nothing about this run (see shared TOOLS notes)."""
    from lightning.pytorch.utilities.warnings import PossibleUserWarning

    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


class LitVAE(L.LightningModule):
    """The course VAE; one training step is exactly ``vae.train.train_step``'s math."""

    def __init__(self, config: TrainConfig):
        super().__init__()
        self.config = config
        self.vae = VAE(hidden_dim=config.hidden_dim, latent_dim=config.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.vae(x)  # (batch, 784), (batch, latent) x2

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = model_loss(self.vae, batch)  # summed over the batch, like the plain loop
        self.log("train_loss", loss / len(batch), on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_loss", model_loss(self.vae, batch) / len(batch), on_epoch=True,
                 batch_size=len(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_optimizer(self.parameters(), self.config.lr, self.config.optimizer_impl)


class _EpochLog(Callback):
    """train.log lines, TensorBoard/W&B numbers and the loss guard, as the plain loop has them."""

    def __init__(self, runlog: RunLog, guard: LossGuard, samples: int, epochs: int):
        self.runlog, self.guard, self.samples, self.epochs = runlog, guard, samples, epochs
        self.start = self.last_batch_end = 0.0
        self.result = FitResult([], [], [], {})

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.guard.epoch = trainer.current_epoch + 1
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.guard(outputs["loss"], len(batch))
        self.last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning 2 runs the epoch-end validation before this hook: val_loss is there.
        self.guard.check()
        seconds = self.last_batch_end - self.start  # training only, as the plain loop times it
        metrics = trainer.callback_metrics
        train_loss = float(metrics["train_loss"])
        test_loss = float(metrics.get("val_loss", float("nan")))
        epoch = trainer.current_epoch + 1
        log_epoch(self.runlog, pl_module, epoch, self.epochs, train_loss, test_loss, seconds,
                  self.samples)
        self.result.train_losses.append(train_loss)
        self.result.test_losses.append(test_loss)
        self.result.epoch_seconds.append(seconds)


class _SawInterrupt(Callback):
    """Lightning turns Ctrl-C into ``exit(1)`` after its own shutdown; this notes that it was one,
    so the CLI can say "interrupted" (exit 130) like the plain loop."""

    def __init__(self) -> None:
        self.interrupted = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self.interrupted = isinstance(exception, KeyboardInterrupt)


def make_profiler(kind: str, out: Path) -> Any:
    """Lightning's profiler writing into ``out/profiler`` (None for ``none``)."""
    if kind == "none":
        return None
    from lightning.pytorch import profilers

    folder = out / "profiler"
    if kind == "simple":
        return profilers.SimpleProfiler(dirpath=folder, filename="simple")
    if kind == "advanced":
        # One .prof per hook (snakeviz opens each); nested hooks are not inclusive.
        return profilers.AdvancedProfiler(dirpath=folder, filename="advanced", dump_stats=True)
    # Chrome traces that TensorBoard's profiler tab lists: tensorboard --logdir OUT/profiler
    return profilers.PyTorchProfiler(dirpath=folder, filename="pytorch", export_to_chrome=True)


def _fit(trainer: L.Trainer, model: LitVAE, train_data: object, test_data: object, guard: LossGuard,
         saw_interrupt: _SawInterrupt) -> None:
    """``trainer.fit``, with a NaN input and a Ctrl-C said as :func:`vae.fit.fit` says them."""
    try:
        trainer.fit(model, train_dataloaders=train_data, val_dataloaders=test_data)
    except RuntimeError as exc:
        if is_nan_input_error(exc):
            raise guard.output_is_nan() from exc
        raise
    except SystemExit:
        if saw_interrupt.interrupted:
            import signal

            # Lightning ignores SIGINT during its shutdown and leaves it so
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt from None
        raise


def fit_lightning(config: TrainConfig, train: MnistSplit, test: MnistSplit, device: torch.device,
                  out: Path, *, progress: bool = True, logger: str = "tensorboard",
                  patience: int = 3, profiler: str = "none", callbacks: list[Callback] | None = None,
                  max_steps: int = -1) -> FitResult:
    """Train with ``lightning.Trainer``; raises NonFiniteLoss like :func:`vae.fit.fit`."""
    quiet_lightning()
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    model = LitVAE(config)
    train_data = make_pipeline(config.pipeline, train, batch_size=config.batch_size, device=device,
                               seed=config.seed, num_workers=config.num_workers)
    test_data = make_pipeline("batched", test, batch_size=config.batch_size, device=device,
                              seed=config.seed + 1)
    hparams = hyperparameters(config, device, train)
    hparams.update(trainer="lightning", patience=patience)
    runlog = RunLog(out, logger, hparams)
    guard = LossGuard(device)
    epoch_log = _EpochLog(runlog, guard, train_data.num_samples, config.epochs)
    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints", monitor="val_loss", save_last=True,
                                  filename="epoch{epoch}-val_loss{val_loss:.2f}",
                                  auto_insert_metric_name=False)
    stopping = EarlyStopping(monitor="val_loss", patience=patience)
    saw_interrupt = _SawInterrupt()
    trainer = L.Trainer(
        max_epochs=config.epochs, max_steps=max_steps,
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
        callbacks=[epoch_log, checkpoints, stopping, saw_interrupt, *(callbacks or [])],
        profiler=make_profiler(profiler, out), enable_progress_bar=progress,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(out),
        deterministic=False)
    log.info("Training with Lightning %s: %s on %s, %d threads; %s", L.__version__,
             type(train_data).__name__, device, torch.get_num_threads(), train.description)
    try:
        model.to(device)
        runlog.graph(model.vae, next(iter(test_data))[:1])
        _fit(trainer, model, train_data, test_data, guard, saw_interrupt)
        result = epoch_log.result
        if stopping.stopped_epoch:
            log.info("EarlyStopping: val_loss did not improve for %d epochs; stopped after epoch %d",
                     patience, stopping.stopped_epoch + 1)
        if checkpoints.best_model_path:
            log.info("best checkpoint (val_loss %.2f): %s", float(checkpoints.best_model_score),
                     checkpoints.best_model_path)
        if profiler != "none":
            log.info("Lightning's %s profiler wrote into %s", profiler, out / "profiler")
        shown = next(iter(test_data))[:100]
        metrics = ({"hparam/train_loss": result.train_losses[-1],
                    "hparam/test_loss": result.test_losses[-1]} if result.train_losses else {})
        result.images = finish(runlog, model.vae, shown, out, config.seed,
                               len(result.train_losses), hparams, metrics)
        return result
    finally:
        runlog.close()
