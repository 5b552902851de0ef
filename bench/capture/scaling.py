"""The other half of fp16 autocast, put into a script that does not have it: a gradient scaler
around the script's own ``backward()`` and optimizer steps -- what ``torch.amp.GradScaler``
asks a script to write (``scaler.scale(loss).backward()``, ``scaler.unscale_(optimizer)``
before clipping, ``scaler.step(optimizer)``, ``scaler.update()``), done by patching:

- the outermost ``backward()`` of a scalar loss runs on ``scaler.scale(loss)``; before it the
  scale is updated if an optimizer stepped since the last update (so every optimizer stepping
  after one backward unscales by the scale that backward used);
- each optimizer step first unscales that optimizer's gradients (unless clipping already did)
  and, when one is inf or NaN, drops them all (``grad = None``): the step then changes nothing,
  as ``scaler.step`` would have skipped it, and the next update lowers the scale;
- ``clip_grad_norm_`` and ``clip_grad_value_`` unscale every optimizer built so far first, so
  the script clips the true gradients.

An optimizer stepped with a closure (LBFGS) cannot be scaled this way (GradScaler refuses
closures too): the step raises, and ``--try`` reports the fix as failed.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch

Undo = list[Callable[[], None]]


class LossScaling:
    def __init__(self) -> None:
        self.scaler: Any = None  # made at the first scaled backward, on the loss's device
        self.optimizers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.depth = 0  # Tensor.backward calls torch.autograd.backward: only the outermost scales
        self.stepped = False  # an optimizer unscaled since the last update

    def install(self, undo: Undo) -> None:
        from torch.optim import optimizer as optim

        for owner, attr in ((torch.Tensor, "backward"), (torch.autograd, "backward")):
            self._wrap_backward(owner, attr, undo)
        for owner in (torch.nn.utils, torch.nn.utils.clip_grad):
            for attr in ("clip_grad_norm_", "clip_grad_value_"):
                self._wrap_clip(owner, attr, undo)
        init = torch.optim.Optimizer.__init__
        scaling = self

        def made(optimizer: Any, *args: Any, **kwargs: Any) -> None:
            init(optimizer, *args, **kwargs)
            scaling.optimizers.add(optimizer)

        torch.optim.Optimizer.__init__ = made  # type: ignore[method-assign]
        undo.append(lambda: setattr(torch.optim.Optimizer, "__init__", init))
        handle = optim.register_optimizer_step_pre_hook(self._before_step)
        undo.append(handle.remove)

    def _wrap_backward(self, owner: Any, attr: str, undo: Undo) -> None:
        original = getattr(owner, attr)
        scaling = self

        def backward(loss: Any, *args: Any, **kwargs: Any) -> Any:
            outer = scaling.depth == 0 and isinstance(loss, torch.Tensor) and loss.numel() == 1 \
                and loss.requires_grad and loss.is_floating_point()
            scaling.depth += 1
            try:
                return original(scaling._scaled(loss) if outer else loss, *args, **kwargs)
            finally:
                scaling.depth -= 1

        setattr(owner, attr, backward)
        undo.append(lambda: setattr(owner, attr, original))

    def _scaled(self, loss: torch.Tensor) -> torch.Tensor:
        if self.scaler is None:
            self.scaler = torch.amp.GradScaler(loss.device.type)
        if self.stepped:
            self.scaler.update()
            self.stepped = False
        return self.scaler.scale(loss)

    def _unscale(self, optimizer: Any) -> bool:
        """Unscale ``optimizer``'s gradients once per step; True when one is inf or NaN."""
        from torch.amp.grad_scaler import OptState

        state = self.scaler._per_optimizer_states[id(optimizer)]
        if state["stage"] is not OptState.UNSCALED:
            self.scaler.unscale_(optimizer)
        return bool(sum(v.item() for v in state["found_inf_per_device"].values()))

    def _wrap_clip(self, owner: Any, attr: str, undo: Undo) -> None:
        original = getattr(owner, attr)
        scaling = self

        def clip(*args: Any, **kwargs: Any) -> Any:
            if scaling.scaler is not None:
                for optimizer in list(scaling.optimizers):
                    if any(p.grad is not None for g in optimizer.param_groups for p in g["params"]):
                        scaling._unscale(optimizer)
            return original(*args, **kwargs)

        setattr(owner, attr, clip)
        undo.append(lambda: setattr(owner, attr, original))

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.scaler is None:  # no scaled backward yet (a step before any backward)
            return
        if any(callable(a) for a in args[1:]) or kwargs.get("closure") is not None:  # args[0]: the optimizer
            raise RuntimeError("fp16 loss scaling: an optimizer step with a closure cannot be scaled "
                               "(torch.amp.GradScaler does not support closures either)")
        if self._unscale(optimizer):  # inf/NaN gradients: this step must change nothing
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
        self.stepped = True
