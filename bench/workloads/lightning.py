"""What PyTorch Lightning's loop costs per step: the VAE trained by ``lightning.Trainer`` against
the same VAE trained by the plain loop, on the same pipeline, measured by the same engine.

    python -m bench profile --workload bench.workloads.lightning:make --tools none

Lightning owns its loop (``trainer.fit`` pulls batches and runs every hook), so it cannot be
called one step at a time. Each variant therefore runs its loop in a background thread fed
from a queue: the engine's ``fetch()`` takes the next batch from the pipeline, ``step()``
hands it to the loop and waits until the loop comes back for the next batch -- so all its
per-step work, hooks included, is inside the step. Both variants go through the very same
hand-off, so the difference between them is Lightning's own work per step: its hooks, its
logging of ``train_loss``, its closure around the optimizer step, its progress tracking.

Variants: ``plain`` (``vae.train.train_step``, the baseline) and ``lightning``; pipeline
``resident`` (the cheapest, so the loop's cost is not hidden behind data loading).
Needs the ``[lightning]`` extra; without it the ``lightning`` variant is skipped with the
install hint.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from bench.workload import Context, ModelWorkload, Unavailable
from vae.data import load_mnist
from vae.fit import TrainConfig
from vae.model import VAE
from vae.pipelines import make_pipeline
from vae.speedups import make_optimizer
from vae.train import train_step

PIPELINE = "resident"
_STOP = object()


class _Feed:
    """An endless iterable the loop pulls batches from; ``len`` is large so no epoch ends.

    A step is done when its loop comes back for the next batch: everything the loop does
    after a step (hooks, bookkeeping) is counted in that step. (With a length, Lightning does
    not fetch ahead.)
    """

    def __init__(self, done: Callable[[], None]) -> None:
        self.batches: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.done = done

    def __len__(self) -> int:
        return 10**9

    def __iter__(self) -> Iterator[torch.Tensor]:
        first = True
        while True:
            if not first:
                self.done()
            first = False
            batch = self.batches.get()
            if batch is _STOP:
                return
            yield batch


class DrivenLoop(ModelWorkload):
    """One training loop in a background thread, advanced one step per ``step()`` call."""

    parts = ("data", "step")

    def __init__(self, name: str, ctx: Context, split: Any, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, run: Callable[[_Feed], None]):
        self.name = name
        self.device = ctx.device
        self.model = model
        self.optimizer = optimizer
        self.pipeline = make_pipeline(PIPELINE, split, batch_size=ctx.batch_size, device=ctx.device,
                                      seed=ctx.seed)
        self.batch_size = ctx.batch_size
        self.batches_per_epoch = len(self.pipeline)
        self.reference = "plain" if name != "plain" else None
        self._stream = iter(self.pipeline)
        self._done = threading.Semaphore(0)
        self._feed = _Feed(self._done.release)
        self._error: BaseException | None = None

        def main() -> None:
            try:
                run(self._feed)
            except BaseException as exc:  # reported by the next step(), in the engine's thread
                self._error = exc
                self._done.release()

        self._thread = threading.Thread(target=main, name=f"vaebench-{name}-loop", daemon=True)
        self._thread.start()

    def describe(self) -> str:
        return f"pipeline {PIPELINE}, batch {self.batch_size}, loop in a driven thread"

    def rewind(self) -> None:
        self.pipeline.rewind()
        self._stream = iter(self.pipeline)

    def fetch(self) -> torch.Tensor:
        batch = next(self._stream, None)
        if batch is None:  # an epoch ended: the stream starts again, as an epoch loop would
            self._stream = iter(self.pipeline)
            batch = next(self._stream)
        return batch

    def step(self, batch: torch.Tensor, part: Callable[[str], Any]) -> None:
        with part("step"):
            self._feed.batches.put(batch)
            self._done.acquire()
        if self._error is not None:
            raise RuntimeError(f"the {self.name} loop failed: {self._error}") from self._error

    def close(self) -> None:
        self._feed.batches.put(_STOP)
        self._thread.join(timeout=30)


def _plain(ctx: Context, split: Any) -> DrivenLoop:
    torch.manual_seed(ctx.seed)
    model = VAE().to(ctx.device)
    optimizer = make_optimizer(model.parameters(), 1e-3)

    def run(feed: _Feed) -> None:
        model.train()
        for batch in feed:
            train_step(model, batch, optimizer)

    return DrivenLoop("plain", ctx, split, model, optimizer, run)


def _lightning(ctx: Context, split: Any) -> DrivenLoop:
    try:
        import lightning as L
    except ImportError:
        raise Unavailable("needs the [lightning] extra: pip install -e '.[lightning]'") from None
    from vae.lightning_fit import LitVAE, quiet_lightning

    quiet_lightning()
    torch.manual_seed(ctx.seed)
    lit = LitVAE(TrainConfig(pipeline=PIPELINE, batch_size=ctx.batch_size, seed=ctx.seed)).to(ctx.device)
    holder: dict[str, torch.optim.Optimizer] = {}

    # The engine restores the optimizer's state between rounds, so it needs the very optimizer
    # Lightning steps: configure_optimizers returns this one.
    optimizer = make_optimizer(lit.parameters(), 1e-3)
    holder["opt"] = optimizer
    lit.configure_optimizers = lambda: holder["opt"]  # type: ignore[method-assign]

    def run(feed: _Feed) -> None:
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, limit_val_batches=0,
                            accelerator="gpu" if ctx.device.type == "cuda" else "cpu", devices=1)
        trainer.fit(lit, train_dataloaders=feed)

    return DrivenLoop("lightning", ctx, split, lit, optimizer, run)


def make(ctx: Context) -> dict[str, Callable[[], DrivenLoop]]:
    split = load_mnist(ctx.data_dir, train=True, dataset=ctx.dataset, limit=ctx.limit,
                       progress=ctx.progress)
    return {"plain": lambda: _plain(ctx, split), "lightning": lambda: _lightning(ctx, split)}
