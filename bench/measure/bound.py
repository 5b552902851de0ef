"""What bounds a script's step, decided once from its parts' shares (and its MFU): the renderers
only put it into words.

- **A bound** is named only where the group of parts it names takes more than half the step
  (``DOMINATES``); otherwise there is **no single bound** and the step's split is said.
- **Overhead-bound**: forward and backward dominate at under a tenth of the peak FLOP/s: the time
  goes to per-operator overhead and to work the FLOP count leaves out, not to arithmetic.
- **No verdict** where the module hooks did not see the forward (a model called as
  ``model.forward(x)``): a forward under a tenth of backward while a quarter of the step is
  unlabelled (a forward costs about a third to a half of its backward).
- **What to try**: from ``ADVISE_FROM`` of the step, the fixes of ``--try`` that aim at the
  group (none aims at host-bound work: what to look for instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.measure import derive
from bench.measure.result import Result

# each bound: the parts it names, and what `vaebench run --try` measures against it
GROUPS = {
    "input-bound": (("data", "copy"), "`num_workers`, `persistent_workers`, `pin_memory` (CUDA)"),
    "compute-bound": (("forward", "backward"), "bf16 autocast, threads, TF32 and cudnn.benchmark "
                      "(CUDA), `torch.compile` (`--fixes compile`)"),
    "optimizer-bound": (("optimizer",), "`foreach=True`, `fused=True`"),
    "host-bound": (("other",), ""),
}
ADVISE_FROM = 0.4
DOMINATES = 0.5
BUSY = 0.1  # MFU under which dominating forward+backward is overhead, not arithmetic
UNSEEN_FORWARD, UNLABELLED = 0.1, 0.25


@dataclass(frozen=True)
class Bound:
    kind: str  # a GROUPS key, "overhead-bound", "no single bound" or "unseen forward"
    parts: tuple[str, ...] = ()  # the parts it names (those measured)
    share: float = 0.0  # their share of the step
    split: dict[str, float] = field(default_factory=dict)  # "data" / "forward+backward" -> share
    fixes: str = ""  # what --try measures against it ("" none)
    advise: bool = False  # its share is worth acting on
    mfu: float | None = None
    shares: dict[str, float] = field(default_factory=dict)  # each part's share of the step


def forward_unseen(shares: dict[str, float]) -> bool:
    backward = shares.get("backward", 0.0)
    return backward > 0 and shares.get("forward", 0.0) < UNSEEN_FORWARD * backward \
        and shares.get("other", 0.0) >= UNLABELLED


def bound(result: Result, name: str) -> Bound | None:
    """The step's bound (None: no parts measured)."""
    shares = derive.shares(result, name)
    if not shares:
        return None
    if forward_unseen(shares):
        return Bound("unseen forward", shares=shares)
    grouped = {g: sum(shares.get(p, 0.0) for p in parts) for g, (parts, _) in GROUPS.items()}
    top = max(grouped, key=lambda g: grouped[g])
    parts, fixes = GROUPS[top]
    named = tuple(p for p in parts if p in shares)
    split = {"+".join(p for p in group if p in shares): grouped[g]
             for g, (group, _) in GROUPS.items() if grouped[g] >= 0.005}
    mfu = derive.mfu(result, name)
    if grouped[top] <= DOMINATES:
        kind = "no single bound"
    elif top == "compute-bound" and mfu is not None and mfu < BUSY:
        kind = "overhead-bound"
    else:
        kind = top
    return Bound(kind, named, grouped[top], split, fixes, grouped[top] >= ADVISE_FROM, mfu, shares)
