"""DistributedDataParallel models, remembered as the script makes them (nothing else changes):
DDP times its own gradient all-reduce on sampled iterations, and a rank's record reads it."""

from __future__ import annotations

from typing import Any


def keep_ddp(models: list[Any], patched: list[tuple[Any, str, Any]]) -> None:
    """Append every DistributedDataParallel made from now on to ``models``."""
    from torch.nn.parallel import DistributedDataParallel

    original = DistributedDataParallel.__init__

    def init(model: Any, *args: Any, **kwargs: Any) -> None:
        original(model, *args, **kwargs)
        models.append(model)

    DistributedDataParallel.__init__ = init  # type: ignore[method-assign]
    patched.append((DistributedDataParallel, "__init__", original))


def allreduce_times(models: list[Any]) -> dict[str, float]:
    """DDP's own sampled timing of the backward pass's all-reduce (ms; empty without DDP)."""
    for model in models:
        try:
            data = model._get_ddp_logging_data()
        except Exception:  # an older torch, or a model torn down: nothing to read
            continue
        if data.get("avg_backward_comm_time"):
            return {"allreduce_ms": data["avg_backward_comm_time"] / 1e6,
                    "allreduce_overlap_ms": data.get("avg_backward_compute_comm_overlap_time", 0) / 1e6,
                    "allreduce_sampled_iterations": float(data.get("iteration", 0))}
    return {}
