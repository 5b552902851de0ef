"""Stop training at the first non-finite loss, naming the step, the epoch and the last finite
loss -- instead of a traceback from deep inside the loss a few steps later.

A diverging run (``--lr 10``) first produces huge losses, then ``inf``/``nan`` weights, and
then the sigmoid's NaN output makes ``binary_cross_entropy`` raise ("all elements of input
should be between 0 and 1"). Both are caught here. On a GPU, reading the loss is a device
synchronization: the losses are read in windows of ``every`` steps (one sync per window),
so the step named is still exact.
"""

from __future__ import annotations

import math

import torch


class NonFiniteLoss(RuntimeError):
    """Training stopped: the loss (or the model's output) stopped being a finite number."""

    def __init__(self, what: str, step: int, epoch: int, last_finite: float | None):
        self.step, self.epoch, self.last_finite = step, epoch, last_finite
        last = f"{last_finite:.4g}" if last_finite is not None else "none yet"
        super().__init__(f"{what} at step {step} of epoch {epoch} (last finite loss per sample: "
                         f"{last}); lower --lr, or run with --detect-anomaly to find the operation")


def is_nan_input_error(exc: BaseException) -> bool:
    """binary_cross_entropy's complaint when the model's output is NaN."""
    return isinstance(exc, RuntimeError) and "should be between 0 and 1" in str(exc)


class LossGuard:
    """A step callback (``on_step(loss, n)``) that raises :class:`NonFiniteLoss`."""

    def __init__(self, device: torch.device, every: int | None = None):
        self.every = every or (20 if device.type == "cuda" else 1)
        self.pending: list[tuple[torch.Tensor, int]] = []
        self.step = 0  # steps checked, over the whole run
        self.epoch = 1
        self.last_finite: float | None = None

    def __call__(self, loss: torch.Tensor, n: int) -> None:
        self.pending.append((loss.detach(), n))
        if len(self.pending) >= self.every:
            self.check()

    def check(self) -> None:
        """Read the pending losses (one sync) and raise at the first that is not finite."""
        if not self.pending:
            return
        values = torch.stack([loss for loss, _ in self.pending]).tolist()
        sizes = [n for _, n in self.pending]
        self.pending = []
        for value, n in zip(values, sizes, strict=True):
            self.step += 1
            if not math.isfinite(value):
                raise NonFiniteLoss(f"the loss is {value}", self.step, self.epoch, self.last_finite)
            self.last_finite = value / n

    def output_is_nan(self) -> NonFiniteLoss:
        """The error for a step whose forward produced NaN (checked losses first)."""
        self.check()
        return NonFiniteLoss("the model's output is NaN", self.step + 1, self.epoch, self.last_finite)
