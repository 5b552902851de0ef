"""The names a command line offers, without importing torch: ``--help`` and argument errors
answer at once (a torch import is 5-10 s here). The modules that implement them check that
they agree with these (tests/test_cli.py)."""

from __future__ import annotations

PIPELINE_NAMES: tuple[str, ...] = ("naive", "tensor", "batched", "pinned", "resident", "optimized")
DATALOADER_PIPELINES: tuple[str, ...] = ("naive", "tensor")  # take --num-workers
DATASETS: tuple[str, ...] = ("auto", "mnist", "synthetic")
TRAINERS: tuple[str, ...] = ("plain", "lightning")
PROFILERS: tuple[str, ...] = ("none", "simple", "advanced", "pytorch")  # Lightning's own
LOGGERS: tuple[str, ...] = ("tensorboard", "wandb", "both")
EXTRAS: dict[str, str] = {"lightning": "lightning", "wandb": "wandb"}  # module -> pip extra
