"""The one alternation schedule of separate processes: ``run --compare`` (two command lines) and
``regress`` (two commits) both visit their sides A B, B A, A B, ... -- each pair's order rotated,
so each side runs first in half of the pairs and a machine that warms up or slows down over the
run hits both alike (the engine rotates its variants inside one process the same way)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def alternate(sides: Sequence[T], repeats: int) -> Iterator[tuple[int, T]]:
    """``(repeat, side)`` for ``repeats`` passes over ``sides``, pass ``i`` rotated by ``i``."""
    n = len(sides)
    for i in range(repeats):
        k = i % n
        for side in [*sides[k:], *sides[:k]]:
            yield i, side
