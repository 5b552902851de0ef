"""The ``torch.distributed`` collectives a script calls by hand, timed as the part ``collective``.

A script that averages its gradients itself (no DistributedDataParallel) spends a fast rank's
wait for a slow one inside ``dist.all_reduce``: timing each blocking call gives every rank's
wait per step (:mod:`bench.ranks.skew`) and the collectives' ends, on which the ranks' clocks
are aligned (:mod:`bench.ranks.align`). The module functions are wrapped in
``torch.distributed`` and ``torch.distributed.distributed_c10d`` (a script's
``from torch.distributed import all_reduce`` made after the wrap gets the wrapper too).

Not timed: a collective with ``async_op=True`` (its wait is in ``work.wait()``, which may come
anywhere later) and DDP's own all-reduce, which runs in C++ inside ``backward`` (DDP times it:
:mod:`bench.ranks.ddp`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object",
               "reduce_scatter", "reduce_scatter_tensor", "broadcast", "broadcast_object_list",
               "reduce", "all_to_all", "all_to_all_single", "gather", "scatter", "barrier")
PART = "collective"


def wrap_collectives(enter: Callable[[str], int | None], leave: Callable[[str], None],
                     named: Callable[[int, str], None], patched: list[tuple[Any, str, Any]]) -> None:
    """Wrap each blocking collective: ``enter(PART)`` opens the part (returns its span index or
    None when parts are not timed), ``named(index, op)`` says which collective it was,
    ``leave(PART)`` closes it. Appends (owner, name, original) to ``patched`` for the undo."""
    import torch.distributed as dist
    from torch.distributed import distributed_c10d as c10d

    if not dist.is_available():
        return
    for op in COLLECTIVES:
        original = getattr(c10d, op, None)
        if original is None:
            continue
        wrapper = _timed(op, original, enter, leave, named)
        for owner in (dist, c10d):
            if getattr(owner, op, None) is original:
                setattr(owner, op, wrapper)
                patched.append((owner, op, original))


def _timed(op: str, original: Callable[..., Any], enter: Callable[[str], int | None],
           leave: Callable[[str], None], named: Callable[[int, str], None]) -> Callable[..., Any]:
    try:
        signature: inspect.Signature | None = inspect.signature(original)
    except (TypeError, ValueError):
        signature = None

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _is_async(signature, args, kwargs):
            return original(*args, **kwargs)
        index = enter(PART)
        if index is not None:
            named(index, op)
        try:
            return original(*args, **kwargs)
        finally:
            if index is not None:
                leave(PART)

    return wrapper


def _is_async(signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if "async_op" in kwargs or signature is None:
        return bool(kwargs.get("async_op"))
    try:
        return bool(signature.bind_partial(*args, **kwargs).arguments.get("async_op"))
    except TypeError:  # the call itself is wrong: the original says so
        return False
