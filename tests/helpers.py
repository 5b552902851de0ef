"""What several test modules use: in-process CLI calls shaped like a subprocess's result, small
file writers, a Result made from fixed numbers, and the "trains the same model" check. Tests
import from here, never from one another."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.measure.clock import Timing
from bench.measure.environment import Environment
from bench.measure.result import Measurement, Result
from bench.measure.specs import VariantsSpec

ROOT = Path(__file__).resolve().parents[1]
QUIET_ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def in_process(main: Callable[[list[str]], int], args: Sequence[str | Path]
               ) -> subprocess.CompletedProcess[str]:
    """``main(args)`` in this process, its exit status and output shaped like a subprocess's (an
    argparse error's SystemExit included)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(list(map(str, args)), code, out.getvalue(), err.getvalue())


def run_vae(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``python -m vae ...`` in this process."""
    from vae.cli import main

    return in_process(main, args)


def run_bench(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``python -m bench ...`` in this process."""
    from bench.cli import main

    return in_process(main, args)


def assert_clean_error(proc: subprocess.CompletedProcess[str], *phrases: str) -> None:
    """Exit 2 with an ``error:`` line naming each phrase, and no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "error:" in proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr


def write(tmp_path: Path, body: str, name: str) -> Path:
    """``body`` (dedented) into ``tmp_path / name``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


# A factory with a variant whose step raises after 8 steps (what a user's bug looks like).
BROKEN = """
    import torch
    from bench.workload import ModelWorkload

    class Tiny(ModelWorkload):
        def __init__(self, fail):
            self.device = torch.device("cpu")
            self.model = torch.nn.Linear(4, 1)
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
            self.fail, self.calls = fail, 0

        def fetch(self):
            return torch.ones(8, 4)

        def step(self, batch, part):
            self.calls += 1
            if self.fail and self.calls > 8:
                raise ValueError("shapes went wrong")
            with part("forward"):
                loss = self.model(batch).sum()
            with part("backward"):
                self.optimizer.zero_grad()
                loss.backward()
            with part("optimizer"):
                self.optimizer.step()

    def make(ctx):
        return {"good": lambda: Tiny(False), "bad": lambda: Tiny(True)}
    """


# --- a Result from fixed numbers ------------------------------------------------------------

TEST_ENV = Environment(cpu="Test CPU", cores=2, threads=2, torch="2.x", python="3.11", device="cpu",
                       gpu="none")


def rounds(ms: list[float], parts: dict[str, float] | None = None) -> list[Timing]:
    """One Timing per value: a round of 2 steps at ``ms`` milliseconds per step."""
    out = []
    for v in ms:
        s = v / 1e3
        p = {k: [s * share] * 2 for k, share in (parts or {"data": 0.5, "compute": 0.5}).items()}
        out.append(Timing(seconds=2 * s, steps=[s, s], parts=p))
    return out


def make_result(per_variant: dict[str, list[float]], bound: list[float] | None = None,
                ordered: bool = False) -> Result:
    """A ``variants`` Result whose variants' rounds take ``per_variant`` ms per step."""
    names = list(per_variant)
    spec = VariantsSpec(workload="t:make", variants=tuple(names), device="cpu", batch_size=10, seed=0,
                        threads=None, data_dir="data", dataset="fake", limit=None, ordered=ordered)
    measurements = [Measurement(name=n, parts=["data", "compute"], batch_size=10, batches_per_epoch=100,
                                description="fake", samples=rounds(v)) for n, v in per_variant.items()]
    if bound is not None:
        measurements.append(Measurement(name=f"{names[-1]}:bound", bound_of=names[-1],
                                        parts=["data", "compute"], batch_size=10,
                                        samples=rounds(bound, {"compute": 1.0})))
    return Result(kind="variants", spec=spec, machine=TEST_ENV, measurements=measurements)


# --- "trains the same model" ----------------------------------------------------------------

# After 5 Adam steps (lr 1e-3) a step variant's parameters differ from eager's by reordered float
# arithmetic: ~1e-7 (fused) to ~4e-5 (compiled) for almost all of them. A parameter whose
# gradient is at the level of that rounding can have its Adam update (g / sqrt(v), about +-lr)
# flip sign, so a handful may differ by up to steps x lr: measured 1 of 973,624 at 2.005e-4 on
# an Intel Xeon (0 on an AMD EPYC). The losses agree to ~5e-7 relative.
PARAM_ATOL, LOSS_RTOL, LR, STEPS = 2e-4, 1e-5, 1e-3, 5


def assert_same_training(got: tuple[torch.Tensor, list[float]], eager: tuple[torch.Tensor, list[float]]
                         ) -> None:
    params, losses = got
    diff = (params - eager[0]).abs()
    assert (diff > PARAM_ATOL).float().mean().item() < 1e-5, f"{int((diff > PARAM_ATOL).sum())} params"
    assert diff.max().item() <= STEPS * LR, diff.max().item()
    assert losses == pytest.approx(eager[1], rel=LOSS_RTOL)


# --- pytest-benchmark runs over time ---------------------------------------------------------

def write_runs(folder: Path, levels: dict[str, list[float]], noise: float = 0.03, seed: int = 0) -> None:
    """One pytest-benchmark file per run; ``levels[name][i]`` is that benchmark's level in run i."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    runs = len(next(iter(levels.values())))
    for i in range(runs):
        doc = {"machine_info": {"node": "ci-box"},
               "commit_info": {"id": f"{i:02d}" + "c0ffee" * 6, "dirty": False},
               "datetime": f"2026-11-{i + 1:02d}T12:00:00+00:00",
               "benchmarks": [{"name": n, "group": "step", "params": {}, "extra_info": {},
                               "stats": {"data": list(lv[i] * np.exp(rng.normal(0, noise, 10)))}}
                              for n, lv in levels.items()]}
        (folder / f"{i + 1:04d}_run.json").write_text(json.dumps(doc))


def memory_of(step: Callable[[], object], device: torch.device):
    """The memory breakdown of ``step`` as a run measures it (a priming step, then the one read):
    (the StepMemory, its Breakdown)."""
    from bench.measure.memory import StepMemory

    memory = StepMemory(device)
    memory.start()
    step()
    memory.between()
    step()
    memory.end()
    found = memory.stop()
    assert found is not None, memory.error
    return memory, found
