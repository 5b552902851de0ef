"""Training and evaluation of the VAE over any pipeline of the ladder.

``train_step`` is the unit the benchmarks time; ``train_epoch`` and ``evaluate`` run one
pass; ``save_images`` writes the course's three image grids. Forward, backward and the
optimizer step are labelled with ``record_function`` so profiler traces show them by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path

import torch
from torch.profiler import record_function
from torchvision.utils import save_image

from vae.model import VAE, model_loss

StepCallback = Callable[[torch.Tensor, int], None]
# phase(name) -> a context manager around one part of a step ("forward", "backward",
# "optimizer"); the default labels it for the profiler, a harness may also time it.
Phase = Callable[[str], AbstractContextManager]
IMAGE_FILES = ("orig_data.png", "reconstructions.png", "generated_samples.png")


def train_step(model: VAE, batch: torch.Tensor, optimizer: torch.optim.Optimizer,
               *, phase: Phase = record_function,
               loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
               update_fn: Callable[[], object] | None = None) -> torch.Tensor:
    """One optimization step on ``batch`` (batch, 784); returns the summed loss, detached.

    The gradients are cleared first: the course's bug 4 never zeroed them, so every step
    used the sum of all gradients so far. ``phase`` wraps each part of the step (see
    :data:`Phase`); a harness passes its own to time the parts without copying this code.
    ``loss_fn``/``update_fn`` replace forward+loss and ``optimizer.step`` (compiled versions:
    ``vae.speedups.step_functions``).
    """
    optimizer.zero_grad(set_to_none=True)
    with phase("forward"):
        loss = model_loss(model, batch) if loss_fn is None else loss_fn(batch)
    with phase("backward"):
        loss.backward()
    with phase("optimizer"):
        (update_fn or optimizer.step)()
    return loss.detach()


def train_epoch(model: VAE, pipeline: Iterable[torch.Tensor], optimizer: torch.optim.Optimizer,
                *, on_step: StepCallback | None = None,
                loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                update_fn: Callable[[], object] | None = None) -> float:
    """Train one epoch; returns the mean loss per sample.

    The running loss stays on the device (no ``.item()`` per step, which would synchronize a
    GPU every step); ``on_step(loss, batch_size)`` gets each step's detached loss.
    """
    model.train()
    total: torch.Tensor | None = None
    samples = 0
    for batch in pipeline:
        loss = train_step(model, batch, optimizer, loss_fn=loss_fn, update_fn=update_fn)
        total = loss if total is None else total + loss
        samples += batch.size(0)
        if on_step is not None:
            on_step(loss, batch.size(0))
    if total is None:
        raise ValueError("the pipeline yielded no batches")
    return total.item() / samples


@torch.no_grad()
def evaluate(model: VAE, pipeline: Iterable[torch.Tensor]) -> float:
    """Mean loss per sample over one pass of ``pipeline``, without gradients."""
    model.eval()
    total = torch.zeros(())
    samples = 0
    for batch in pipeline:
        total = total.to(batch.device) + model_loss(model, batch)
        samples += batch.size(0)
    if samples == 0:
        raise ValueError("the pipeline yielded no batches")
    return total.item() / samples


@torch.no_grad()
def save_images(model: VAE, batch: torch.Tensor, out_dir: str | Path, *, seed: int = 0,
                nrow: int = 10) -> dict[str, Path]:
    """Write orig_data.png, reconstructions.png and generated_samples.png into ``out_dir``.

    ``batch`` is (n, 784) test images (the course shows 100 as a 10x10 grid); the samples
    decode ``n`` draws from the prior, seeded so two runs draw the same latents.
    """
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = batch.size(0)
    x_hat, _, _ = model(batch)  # (n, 784)
    generator = torch.Generator(device=batch.device).manual_seed(seed)
    samples = model.sample(n, generator=generator)  # (n, 784)
    grids = dict(zip(IMAGE_FILES, (batch, x_hat, samples), strict=True))
    paths = {}
    for name, images in grids.items():
        paths[name] = out / name
        save_image(images.view(n, 1, 28, 28), paths[name], nrow=nrow)
    return paths
