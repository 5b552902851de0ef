"""Where a training run's numbers and pictures go: TensorBoard, Weights & Biases, or both.

Both trainers (the plain loop and Lightning) log through this one class, so the two write
the same tags. W&B is optional (the ``[wandb]`` extra) and imported only when asked for.
Without an API key it runs offline into ``<out>/wandb`` -- nothing leaves the machine, and
``wandb sync`` uploads it later; with a key but no network it gives up after a short time
limit and goes offline too. Everything W&B writes (its cache and settings included) stays
under ``--out``.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid

log = logging.getLogger(__name__)
WANDB_INIT_TIMEOUT_S = 20


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def grid_of(images: torch.Tensor) -> torch.Tensor:
    """(n, 784) in [0, 1] -> a (3, H, W) image grid, 10 per row."""
    return make_grid(images.detach().view(-1, 1, 28, 28).cpu(), nrow=10)


class RunLog:
    def __init__(self, out: Path, kinds: str, config: dict[str, Any], project: str = "vaebench"):
        self.out = out
        self.tb = None
        self.wandb_run = None
        if kinds in ("tensorboard", "both"):
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
        if kinds in ("wandb", "both"):
            self.wandb_run = self._start_wandb(config, project)

    def _start_wandb(self, config: dict[str, Any], project: str) -> Any:
        import wandb

        folder = self.out / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        # W&B writes into ~/.cache, ~/.config and ~/.local/share by default: keep it all here.
        for var, sub in (("WANDB_DIR", ""), ("WANDB_CACHE_DIR", ".cache"),
                         ("WANDB_CONFIG_DIR", ".config"), ("WANDB_DATA_DIR", ".data")):
            os.environ[var] = str(folder / sub if sub else self.out)
        os.environ.setdefault("WANDB_SILENT", "true")
        mode = os.environ.get("WANDB_MODE") or ("online" if _has_wandb_key() else "offline")
        settings = wandb.Settings(init_timeout=WANDB_INIT_TIMEOUT_S)
        try:
            run = wandb.init(project=project, config=config, mode=mode, dir=str(self.out),
                             settings=settings)
        except Exception as exc:  # no network, a bad key: W&B raises several types
            if mode == "offline":
                raise
            log.warning("W&B online start failed (%s); logging offline instead", exc)
            mode = "offline"
            run = wandb.init(project=project, config=config, mode=mode, dir=str(self.out),
                             settings=settings)
        if mode == "offline":
            log.info("W&B: offline run in %s; upload it later with: wandb sync %s", run.dir,
                     Path(run.dir).parent)
        return run

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for tag, value in values.items():
                self.tb.add_scalar(tag, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log({**values, "epoch": step}, step=step)

    def histograms(self, model: torch.nn.Module, step: int) -> None:
        tensors = {}
        for name, param in model.named_parameters():
            tensors[f"weights/{name}"] = param.detach().cpu()
            if param.grad is not None:
                tensors[f"grads/{name}"] = param.grad.detach().cpu()
        if self.tb is not None:
            for tag, tensor in tensors.items():
                self.tb.add_histogram(tag, tensor, step)
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({tag: wandb.Histogram(t.float().numpy()) for tag, t in tensors.items()},
                               step=step)

    def graph(self, model: torch.nn.Module, example: torch.Tensor) -> None:
        if self.tb is not None:
            import warnings

            with warnings.catch_warnings():
                # Tracing the sampling step is nondeterministic by design; the graph is still right.
                warnings.simplefilter("ignore")
                self.tb.add_graph(model, example)

    def images(self, grids: dict[str, torch.Tensor], step: int) -> None:
        """``grids``: tag -> (n, 784) images in [0, 1]."""
        made = {tag: grid_of(images) for tag, images in grids.items()}
        if self.tb is not None:
            for tag, grid in made.items():
                self.tb.add_image(f"images/{tag}", grid, step)
        if self.wandb_run is not None:
            import wandb

            # wandb.Image casts floats to uint8 without scaling: a [0, 1] grid comes out black.
            self.wandb_run.log({f"images/{tag}": wandb.Image(
                (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), caption=tag)
                for tag, grid in made.items()}, step=step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        if self.tb is not None:
            self.tb.add_hparams(hparams, metrics, run_name=".")
        if self.wandb_run is not None:
            self.wandb_run.summary.update(metrics)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
