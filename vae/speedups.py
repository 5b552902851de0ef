"""What makes the training step itself cheaper: optimizer implementations and torch.compile.

- ``make_optimizer(params, lr, impl)``: Adam as PyTorch's default picks it (a for-loop over the
  parameters on the CPU), ``foreach`` (one multi-tensor kernel per operation) or ``fused`` (one
  fused kernel for the whole update).
- ``step_functions(model, optimizer, compile)``: the forward+loss and the optimizer update that
  ``train_step`` calls -- eager, with the model compiled (``model``), with forward+loss and the
  update compiled as two graphs (``step``: ``zero_grad`` stays outside, since Dynamo skips it,
  and ``backward`` runs between them), or the same captured as CUDA graphs (``cudagraphs``:
  ``torch.compile(mode="reduce-overhead")``, CUDA only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch

from vae.model import VAE, model_loss

OPTIMIZER_IMPLS: tuple[str, ...] = ("default", "foreach", "fused")
COMPILE_MODES: tuple[str, ...] = ("none", "model", "step", "cudagraphs")


def make_optimizer(params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                   impl: str = "default") -> torch.optim.Adam:
    if impl not in OPTIMIZER_IMPLS:
        raise ValueError(f"unknown optimizer implementation {impl!r}: choose from "
                         f"{', '.join(OPTIMIZER_IMPLS)}")
    if impl == "default":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, **{impl: True})


def step_functions(model: VAE, optimizer: torch.optim.Optimizer, compile: str = "none"
                   ) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[], Any]]:
    """(loss_fn, update_fn) for ``train_step``; compiled lazily (on their first call)."""
    if compile not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {compile!r}: choose from {', '.join(COMPILE_MODES)}")
    if compile == "none":
        return partial(model_loss, model), optimizer.step
    if compile == "model":
        return partial(model_loss, torch.compile(model)), optimizer.step
    if compile == "cudagraphs" and next(model.parameters()).device.type != "cuda":
        raise ValueError("CUDA graphs need a CUDA device; on the CPU use compile 'step' or 'model'")
    mode = "reduce-overhead" if compile == "cudagraphs" else None
    loss_fn = torch.compile(partial(model_loss, model), mode=mode)

    @torch.compile(mode=mode)
    def update() -> None:
        optimizer.step()

    return loss_fn, update


def graph_breaks(model: VAE, optimizer: torch.optim.Optimizer, batch: torch.Tensor) -> dict[str, Any]:
    """How Dynamo splits the whole eager step (zero_grad, forward+loss, backward, update), and
    the reasons: why ``step_functions`` compiles two pieces instead of one. ``explain`` resets
    Dynamo: call this before compiling anything that should stay compiled."""
    import torch._dynamo as dynamo

    def whole_step(x: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = model_loss(model, x)
        loss.backward()
        optimizer.step()
        return loss.detach()

    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    try:
        explained = dynamo.explain(whole_step)(batch)
    finally:  # explaining runs the step: put everything back
        model.load_state_dict(state)
        optimizer.load_state_dict(opt_state)
    reasons = sorted({str(getattr(r, "reason", r)).splitlines()[0][:160] for r in explained.break_reasons})
    return {"graphs": explained.graph_count, "graph_breaks": explained.graph_break_count,
            "reasons": reasons}
