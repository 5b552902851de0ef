"""Which ``optimizer.step()`` ends a training step: one **round** of the optimizers the script
steps, the pattern that repeats. One optimizer: each of its steps. A GAN's discriminator then
generator: both, the step ends at the generator's. A critic stepped five times a generator
step (WGAN): all six. An optimizer per layer: all of them.

The pattern is read from the first optimizer steps: the shortest period that repeats twice
and holds every optimizer the script built (or every one stepped so far, after ``PATIENCE``
steps: an optimizer built for a later phase must not hold the decision up). Until then no step
ends; the rounds seen by then end as one step (in the warm-up, which is left out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PATIENCE = 32  # optimizer steps after which the period is read from the optimizers stepped so far


class Rounds:
    def __init__(self, made: Callable[[], int]):
        self.made = made  # optimizers the script has built so far
        self.period: int | None = None
        self.round: list[str] = []  # each optimizer step of a round: "`Adam` at gan.py:216"
        self._seq: list[int] = []
        self._names: list[str] = []
        self._count = 0  # optimizer steps into the current round, once the period is known

    def saw(self, optimizer: Any, where: Callable[[], str]) -> int:
        """An optimizer stepped: how many rounds end here (0 or 1; more once, when the period is
        first known, for the rounds seen until then)."""
        if self.period is not None:
            self._count += 1
            if self._count < self.period:
                return 0
            self._count = 0
            return 1
        self._seq.append(id(optimizer))
        at = where()  # the script's line that stepped it: read only until the pattern is known
        self._names.append(f"`{type(optimizer).__name__}`" + (f" at {at}" if at else ""))
        period = self._period()
        if period is None:
            return 0
        self.period, self.round = period, self._names[:period]
        rounds, self._count = divmod(len(self._seq), period)
        self._seq, self._names = [], []
        return rounds

    def _period(self) -> int | None:
        seq, n = self._seq, len(self._seq)
        distinct = len(set(seq))
        if distinct < self.made() and n < PATIENCE:
            return None  # an optimizer built but not stepped yet: wait for it
        if distinct == 1 and self.made() <= 1:
            return 1  # the one optimizer the script built: each of its steps, from the first
        for p in range(distinct, n // 2 + 1):
            if all(seq[i] == seq[i - p] for i in range(p, n)) and len(set(seq[:p])) == distinct:
                return p
        return distinct if n >= 4 * PATIENCE else None  # no pattern: each optimizer's step a round
