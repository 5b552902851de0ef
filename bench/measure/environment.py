"""The machine a measurement ran on: recorded in every result, printed in every report."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Environment:
    cpu: str
    cores: int
    threads: int  # torch intra-op threads in force
    torch: str
    python: str
    device: str  # "cpu" or "cuda"
    gpu: str  # GPU name, or "none"

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Environment:
        return cls(**{f: d[f] for f in cls.__dataclass_fields__})  # type: ignore[arg-type]

    @classmethod
    def capture(cls, device: torch.device) -> Environment:
        gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
        return cls(cpu=cpu_model(), cores=os.cpu_count() or 1, threads=torch.get_num_threads(),
                   torch=torch.__version__, python=platform.python_version(),
                   device=device.type, gpu=gpu)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        where = self.gpu if self.device == "cuda" else f"CPU only, {self.threads} threads"
        return f"{self.cpu} ({self.cores} cores), {where}, torch {self.torch}"
