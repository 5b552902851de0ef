"""What a step costs besides time: FLOPs (exact, against counts derived by hand), throughput
(exact on an injected clock), peak memory, and MFU against a cached machine peak."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.measure import derive, footprint
from bench.measure.clock import time_steps
from bench.workload import Context
from tests.helpers import memory_of


def _vae_by_hand(b: int) -> int:
    """The course VAE's matmuls: 784-400-400-(20, 20) encoder, 20-400-400-784 decoder."""
    layers = [(784, 400), (400, 400), (400, 20), (400, 20), (20, 400), (400, 400), (400, 784)]
    forward = sum(2 * b * i * o for i, o in layers)
    weight_grads = forward
    input_grads = forward - 2 * b * 784 * 400  # every layer but the first passes a gradient back
    return forward + weight_grads + input_grads


def test_vae_step_flops_equal_the_count_by_hand(train_split):
    from bench.workloads.ladder import LadderWorkload

    work = LadderWorkload("batched", train_split, Context(device=torch.device("cpu")))
    assert footprint.flops_of(lambda: time_steps(work, 1)) == _vae_by_hand(100) == 520_000_000


def test_cnn_step_flops_equal_the_count_by_hand(data_root: Path):
    import importlib.util

    path = Path(__file__).parents[1] / "examples" / "cnn.py"
    spec = importlib.util.spec_from_file_location("cnn_example", path)
    cnn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cnn)
    b = 50
    work = cnn.CNNWorkload(Context(device=torch.device("cpu"), batch_size=b, data_dir=data_root, limit=200),
                           preloaded=True)
    conv1 = 2 * b * 8 * 26 * 26 * (1 * 3 * 3)  # out channels x positions x (in channels x kernel)
    conv2 = 2 * b * 16 * 11 * 11 * (8 * 3 * 3)
    fc = 2 * b * 400 * 10
    # forward, weight gradients of every layer, input gradients of all but the first
    expected = (conv1 + conv2 + fc) * 2 + conv2 + fc
    assert footprint.flops_of(lambda: time_steps(work, 1)) == expected


class Allocates:
    """A workload whose step holds ``extra`` more bytes alive at its peak."""

    device = torch.device("cpu")

    def __init__(self, extra: int):
        self.extra = extra

    def fetch(self) -> torch.Tensor:
        return torch.ones(64, 64)

    def step(self, batch: torch.Tensor, part) -> None:
        held = torch.empty(self.extra // 4) if self.extra else None  # float32: 4 bytes each
        (batch @ batch).sum()
        del held


def _rise(work: object) -> int:
    """The peak of live bytes a step needed above what was live at its start, as the engine
    measures it."""
    memory, found = memory_of(lambda: time_steps(work, 1), torch.device("cpu"))
    return memory.rise(found)


def test_a_step_that_holds_more_reports_at_least_that_much_more():
    base, more = _rise(Allocates(0)), _rise(Allocates(8 << 20))
    assert more - base >= 8 << 20


class _Cycle:
    """Garbage only the cyclic collector frees: a pair that points at each other, holding a tensor."""


def test_garbage_of_an_earlier_profiled_run_freed_mid_step_does_not_lower_the_peak():
    """A CI run reported 7.8 MB for a step that holds 8 MiB: the collector freed an earlier test's
    weight (allocated under an earlier profiler, so its free was counted) inside the step."""
    import gc

    from torch.profiler import ProfilerActivity, profile

    class CollectsFirst(Allocates):
        def step(self, batch: torch.Tensor, part) -> None:
            with torch.profiler.record_function("collects"):
                gc.collect()  # what the collector does on its own at any allocation
            super().step(batch, part)

    gc.disable()
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True):
            for _ in range(3):
                a, b = _Cycle(), _Cycle()
                a.other, b.other, a.tensor = b, a, torch.ones(400, 400)
            del a, b
        # the collector stays off until the step, as if its threshold were crossed just there
        peak = _rise(CollectsFirst(8 << 20))
    finally:
        gc.enable()
    assert peak >= 8 << 20


def test_samples_per_second_is_batch_over_the_median_step_exactly():
    from tests.helpers import make_result

    r = make_result({"a": [10.0, 20.0, 10.0, 20.0, 10.0]})  # ms per step; median 10 ms
    r["a"].batch_size = 50
    assert derive.throughput(r, "a").value == pytest.approx(50 / 0.010)
    r["a"].samples_per_batch, r["a"].sample_unit = 50 * 35, "tokens"
    r.cache.clear()  # derived figures are computed once per Result: an edited one forgets them
    assert derive.throughput(r, "a").value == pytest.approx(1750 / 0.010)
    assert derive.samples_per_batch(r, "a") == (1750.0, "tokens")


def test_mfu_lies_in_0_1_and_the_peak_is_measured_once(tmp_path: Path, monkeypatch, train_split):
    """A real VAE step against the real matmul peak of this machine (both measured here)."""
    from bench.workloads.ladder import LadderWorkload
    from tests.helpers import make_result

    monkeypatch.setattr(footprint, "CACHE", tmp_path)
    calls = []
    real = footprint._matmul_peak

    def counted(device: torch.device) -> tuple[float, int]:
        calls.append(device)
        return real(device, seconds=0.5)

    monkeypatch.setattr(footprint, "_matmul_peak", counted)
    first = footprint.machine_peak(torch.device("cpu"), "test machine")
    second = footprint.machine_peak(torch.device("cpu"), "test machine")
    assert len(calls) == 1 and not first["cached"] and second["cached"]  # cached: measured once
    assert second["flops"] == first["flops"] > 0 and "measured" in second["source"]
    work = LadderWorkload("batched", train_split, Context(device=torch.device("cpu")))
    steps = time_steps(work, 10).steps
    r = make_result({"a": [s * 1e3 for s in steps]})
    r["a"].footprint.flops_per_step = 520_000_000
    r.peak = first
    assert 0 < derive.mfu(r, "a") <= 1


def test_a_cached_peak_that_a_step_beats_is_measured_again(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(footprint, "CACHE", tmp_path)
    rates = iter([50e9, 120e9])
    monkeypatch.setattr(footprint, "_matmul_peak", lambda device: (next(rates), 30))
    first = footprint.machine_peak(torch.device("cpu"), "busy machine")
    assert first["flops"] == 50e9  # measured while the machine was busy
    assert "the best of 30 float32 matmuls of 512, 1024, 2048" in first["source"]
    assert first["source"].startswith("measured 20") and first["measured_at"]  # when, and how
    again = footprint.machine_peak(torch.device("cpu"), "busy machine", at_least=45e9)  # within reach
    assert again["flops"] == 120e9 and not again["cached"]
    assert footprint.machine_peak(torch.device("cpu"), "busy machine", at_least=80e9)["cached"]


def test_a_peak_measured_again_on_a_busier_machine_keeps_the_larger(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(footprint, "CACHE", tmp_path)
    rates = iter([100e9, 60e9])
    monkeypatch.setattr(footprint, "_matmul_peak", lambda device: (next(rates), 30))
    footprint.machine_peak(torch.device("cpu"), "m")
    assert footprint.machine_peak(torch.device("cpu"), "m", at_least=95e9)["flops"] == 100e9


def test_an_mfu_above_100_percent_is_never_stated(tmp_path: Path):
    """A step at 200 GFLOP/s against a cached 100 GFLOP/s peak (measured while the machine was
    busy, as seen here): no MFU, and the report says the peak is wrong."""
    from bench.render import statements
    from tests.helpers import make_result

    r = make_result({"a": [10.0] * 20})  # 10 ms steps
    r["a"].footprint.flops_per_step = 2e9  # 200 GFLOP/s
    r.peak = {"flops": 100e9, "source": "measured 2026-12-06 10:00 UTC"}
    assert derive.mfu(r, "a") is None
    said = derive.mfu_refused(r, "a")
    assert said.startswith("MFU not stated: the step's 200 GFLOP/s beat the machine's peak of 100 GFLOP/s")
    assert said in statements.footprint(r) and "MFU 2" not in statements.footprint(r)
    r.peak = {"flops": 400e9, "source": "measured"}
    r.cache.clear()
    assert derive.mfu(r, "a") == pytest.approx(0.5) and not derive.mfu_refused(r, "a")
