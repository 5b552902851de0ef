"""What is measured: a frozen, hashable RunSpec, saved inside every report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class RunSpec:
    pipeline: str  # a name of vae.pipelines.PIPELINES
    device: str = "cpu"  # a resolved device: "cpu" or "cuda"
    batch_size: int = 100  # the course's
    limit: int | None = None  # first N training samples; None = the whole split
    steps: int = 30  # measured training steps per pass
    warmup: int = 5  # unmeasured steps before each pass
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None = torch's default
    data_dir: str = "data"
    dataset: str = "auto"  # auto | mnist | synthetic

    def __post_init__(self) -> None:
        for name in ("batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"RunSpec.{name} must be positive, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"RunSpec.warmup must be >= 0, got {self.warmup}")

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)
