"""DistributedDataParallel models, remembered as the script makes them: DDP times its own
gradient all-reduce, and a rank's record reads that timing over the measured steps only.

DDP keeps running averages of its backward communication over *sampled* iterations -- by
default the first ten and then every hundredth, so over a short run mostly the warm-up, when a
rank still starts up and the others wait for it (seen here: a rank's "all-reduce" longer than
its median step, and a straggler named with no delay at all). So every DDP model made is set to
sample every iteration (``_set_ddp_runtime_logging_sample_rate(1)``: DDP's own timers, read by
it anyway on sampled iterations), and the averages are read at the measured window's start and
end: their difference, weighted by the iterations, is the mean over the measured steps.
"""

from __future__ import annotations

import contextlib
from typing import Any

KEYS = ("avg_backward_comm_time", "avg_backward_compute_comm_overlap_time")


class DDPTiming:
    def __init__(self) -> None:
        self.models: list[Any] = []  # every DistributedDataParallel made from now on
        self.marks: dict[str, tuple[int, dict[str, float]]] = {}  # start | end -> (iteration, averages)

    def install(self, patched: list[tuple[Any, str, Any]]) -> None:
        """Remember every DistributedDataParallel made from now on, sampling every iteration."""
        from torch.nn.parallel import DistributedDataParallel

        original = DistributedDataParallel.__init__
        models = self.models

        def init(model: Any, *args: Any, **kwargs: Any) -> None:
            original(model, *args, **kwargs)
            models.append(model)
            with contextlib.suppress(Exception):  # an older torch: its own sampling, read the same way
                model._set_ddp_runtime_logging_sample_rate(1)

        DistributedDataParallel.__init__ = init  # type: ignore[method-assign]
        patched.append((DistributedDataParallel, "__init__", original))

    def _read(self) -> tuple[int, dict[str, float]] | None:
        for model in self.models:
            try:
                data = model._get_ddp_logging_data()
            except Exception:  # a model torn down: nothing to read
                continue
            return int(data.get("iteration", 0)), {k: float(data.get(k) or 0.0) for k in KEYS}
        return None

    def mark(self, which: str) -> None:
        """The measured window starts (``start``) or ends (``end``) here."""
        reading = self._read()
        if reading is not None and which not in self.marks:
            self.marks[which] = reading

    def times(self) -> dict[str, float]:
        """The mean all-reduce time (and its overlap with backward compute) over the measured
        steps, ms; empty without DDP or its timing."""
        end = self.marks.get("end") or self._read()
        if end is None or not end[1][KEYS[0]]:
            return {}
        start = self.marks.get("start", (0, dict.fromkeys(KEYS, 0.0)))
        n = end[0] - start[0]
        if n <= 0:
            return {}

        def mean(key: str) -> float:  # the running averages' sums, differenced (ns -> ms)
            return max(end[1][key] * end[0] - start[1][key] * start[0], 0.0) / n / 1e6

        return {"allreduce_ms": mean(KEYS[0]), "allreduce_overlap_ms": mean(KEYS[1]),
                "allreduce_sampled_iterations": float(n)}
