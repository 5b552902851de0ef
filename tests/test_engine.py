"""The engine on fake workloads with an injected clock: exact times, rotation, restore, failures."""

from __future__ import annotations

import pytest
import torch

from bench.measure.clock import time_steps
from bench.measure.engine import BOUND, Plan, Session
from bench.workload import Context, Unavailable, Variants


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Fake:
    """A workload whose fetch costs ``data`` and whose step costs ``compute`` fake seconds."""

    parts = ("data", "compute")
    batches_per_epoch = 4
    batch_size = 10

    def __init__(self, name: str, clock: FakeClock, log: list, data: float, compute: float,
                 fail_after: int | None = None):
        self.name, self.clock, self.log = name, clock, log
        self.data, self.compute, self.fail_after = data, compute, fail_after
        self.device = torch.device("cpu")
        self.steps = 0

    def fetch(self) -> int:
        self.clock.advance(self.data)
        return self.steps

    def step(self, batch: int, part) -> None:
        self.steps += 1
        if self.fail_after is not None and self.steps > self.fail_after:
            raise RuntimeError("boom")
        with part("compute"):
            self.clock.advance(self.compute)
        self.log.append(self.name)

    def state(self) -> int:
        return 0

    def restore(self, state: int) -> None:
        self.log.append(f"restore {self.name}")


def test_time_steps_reads_parts_and_steps_off_the_clock():
    clock = FakeClock()
    work = Fake("a", clock, [], data=0.001, compute=0.003)
    t = time_steps(work, 4, clock=clock)
    assert t.seconds == pytest.approx(0.016)
    assert t.per_step == pytest.approx(0.004)
    assert t.steps == pytest.approx([0.004] * 4)
    assert t.parts["data"] == pytest.approx([0.001] * 4)
    assert t.parts["compute"] == pytest.approx([0.003] * 4)


def test_a_given_batch_is_stepped_on_without_fetching():
    clock = FakeClock()
    work = Fake("a", clock, [], data=0.001, compute=0.003)
    t = time_steps(work, 2, batch=7, clock=clock)
    assert t.seconds == pytest.approx(0.006) and "data" not in t.parts


def _session(clock: FakeClock, log: list, plan: Plan, **fakes) -> Session:
    builders = {name: (lambda f=f: f) for name, f in fakes.items()}
    return Session(Variants(builders, "test:make"), plan, clock=clock)


def test_rounds_rotate_the_order_and_restore_every_round():
    clock, log = FakeClock(), []
    plan = Plan(rounds=3, steps=2, warmup=1, round_warmup=0, epochs=0)
    s = _session(clock, log, plan, a=Fake("a", clock, log, 0.001, 0.002),
                 b=Fake("b", clock, log, 0.002, 0.002))
    s.prepare()
    log.clear()
    timings, orders = s.interleaved()
    assert orders == [["a", "b", BOUND], ["b", BOUND, "a"], [BOUND, "a", "b"]]
    assert log[:3] == ["restore a", "a", "a"]
    assert log.count("restore a") == 3 and log.count("restore b") == 6  # b also serves the bound
    assert [t.per_step for t in timings["a"]] == pytest.approx([0.003] * 3)
    assert [t.per_step for t in timings[BOUND]] == pytest.approx([0.002] * 3)  # no fetch: compute only
    assert s.bound_of == "b"


def test_a_failing_step_drops_its_variant_and_keeps_the_others():
    clock, log = FakeClock(), []
    plan = Plan(rounds=4, steps=2, warmup=1, round_warmup=0, bound=False, epochs=0)
    s = _session(clock, log, plan, a=Fake("a", clock, log, 0.001, 0.002),
                 bad=Fake("bad", clock, log, 0.001, 0.002, fail_after=4))
    s.prepare()
    timings, _ = s.interleaved()
    assert set(timings) == {"a"} and len(timings["a"]) == 4
    assert "step raised RuntimeError: boom (at test_engine.py" in s.failed["bad"]


def test_unavailable_and_broken_builders_are_reported_not_raised():
    clock, log = FakeClock(), []

    def unavailable():
        raise Unavailable("needs CUDA")

    def broken():
        raise OSError("disk on fire")

    builders = {"ok": lambda: Fake("ok", clock, log, 0.001, 0.001), "gpu": unavailable, "broken": broken}
    s = Session(Variants(builders, "x:make"), Plan(rounds=5, steps=1, epochs=0), clock=clock)
    s.prepare()
    assert s.skipped == {"gpu": "needs CUDA"}
    assert "building it failed: OSError: disk on fire" in s.failed["broken"]
    assert list(s.works) == ["ok"]


def test_epochs_run_batches_per_epoch_steps_end_to_end():
    clock, log = FakeClock(), []
    plan = Plan(rounds=5, steps=1, warmup=0, round_warmup=0, bound=False, epochs=2)
    s = _session(clock, log, plan, a=Fake("a", clock, log, 0.001, 0.001),
                 m=Fake("m", clock, log, 0.0, 0.001), b=Fake("b", clock, log, 0.0, 0.0005))
    s.prepare()
    epochs = s.epochs()
    assert set(epochs) == {"a", "b"}  # the first and the last variant by default
    assert [t.seconds for t in epochs["a"]] == pytest.approx([0.008, 0.008])  # 4 batches x 2 ms
    assert len(epochs["b"][0].steps) == 4


def test_plan_rejects_nonsense():
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        Plan(rounds=0)
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        Plan(epochs=-1)


def test_context_is_what_a_factory_sees():
    ctx = Context(device=torch.device("cpu"))
    assert ctx.batch_size == 100 and ctx.variants is None


def test_profiler_chatter_is_dropped_and_everything_else_kept(capfd):
    import os

    from bench.measure.quiet import without_profiler_chatter

    with without_profiler_chatter():
        os.write(2, b"USDT:2026-11-23 SyncActivityProfilerHandler.cpp:39] profiler_start\n")
        os.write(2, b"a real warning\n")
        os.write(2, b"ERROR:2026-11-23 03:29:50 2824:2824 DeviceProperties.cpp:56] "
                    b"gpuGetDeviceCount failed with code 35\n")
    assert capfd.readouterr().err == "a real warning\n"


def test_chatter_inside_a_progress_bar_line_is_cut_and_the_bar_kept():
    from bench.measure.quiet import strip_chatter

    data = (b"\rmeasuring:  31%| 1303/4200USDT:2026-11-23 04:39:07 1:1 SyncActivityProfilerHandler.cpp:46]"
            b" profiler_stop\n\rmeasuring:  32%| 1340/4200")
    assert strip_chatter(data) == b"\rmeasuring:  31%| 1303/4200\rmeasuring:  32%| 1340/4200"
