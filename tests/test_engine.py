"""The engine on fake workloads with an injected clock: exact times, rotation, restore, failures."""

from __future__ import annotations

import pytest
import torch

from bench.measure.clock import time_steps
from bench.measure.engine import Engine, Plan
from bench.measure.result import Result
from bench.workload import Context, Unavailable, Variants, WorkloadError


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0
        self.rate = 1.0  # how much slower the machine runs now

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds * self.rate


class Fake:
    """A workload whose fetch costs ``data`` and whose step costs ``compute`` fake seconds."""

    parts = ("data", "compute")
    batches_per_epoch = 4
    batch_size = 10

    def __init__(self, name: str, clock: FakeClock, log: list, data: float, compute: float,
                 fail_after: int | None = None, batches: int | None = None, bound: bool = False):
        self.name, self.clock, self.log = name, clock, log
        self.data, self.compute, self.fail_after = data, compute, fail_after
        self.device = torch.device("cpu")
        self.steps = 0
        self.batches, self.left = batches, batches  # None: the data never ends
        self.measure_bound = bound

    def fetch(self) -> int:
        if self.left is not None:
            if self.left == 0:
                raise StopIteration  # as next() on an exhausted iter(loader) does
            self.left -= 1
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
        self.left = self.batches  # the data stream starts again


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


def _engine(clock: FakeClock, log: list, plan: Plan, **fakes) -> Engine:
    builders = {name: (lambda f=f: f) for name, f in fakes.items()}
    return Engine(Variants(builders, "test:make"), plan, clock=clock)


def test_rounds_rotate_the_order_and_restore_every_round():
    clock, log = FakeClock(), []
    plan = Plan(rounds=3, steps=2, warmup=1, round_warmup=0, epochs=0)
    s = _engine(clock, log, plan, a=Fake("a", clock, log, 0.001, 0.002),
                 b=Fake("b", clock, log, 0.002, 0.002, bound=True))
    s.prepare()
    log.clear()
    timings, orders = s.interleaved()
    assert orders == [["a", "b", "b:bound"], ["b", "b:bound", "a"], ["b:bound", "a", "b"]]
    assert log[:3] == ["restore a", "a", "a"]
    assert log.count("restore a") == 3 and log.count("restore b") == 6  # b also serves its bound
    assert [t.per_step for t in timings["a"]] == pytest.approx([0.003] * 3)
    assert [t.per_step for t in timings["b:bound"]] == pytest.approx([0.002] * 3)  # no fetch: compute
    assert s.bounds == {"b:bound": "b"}  # only the variant that asked for one has a bound


def test_a_failing_step_drops_its_variant_and_keeps_the_others():
    clock, log = FakeClock(), []
    plan = Plan(rounds=4, steps=2, warmup=1, round_warmup=0, bound=False, epochs=0, footprint=False)
    s = _engine(clock, log, plan, a=Fake("a", clock, log, 0.001, 0.002),
                 bad=Fake("bad", clock, log, 0.001, 0.002, fail_after=4))
    s.prepare()
    timings, _ = s.interleaved()
    assert len(timings["a"]) == 4 and "bad" not in s.works
    # warm-up step 1, round 1 steps 2-3, round 2 fails on step 5: round 1 is kept
    assert len(timings["bad"]) == 1
    assert ("round 2 of the interleaved rounds raised RuntimeError: boom (at test_engine.py"
            in s.failed["bad"])


def test_unavailable_and_broken_builders_are_reported_not_raised():
    clock, log = FakeClock(), []

    def unavailable():
        raise Unavailable("needs CUDA")

    def broken():
        raise OSError("disk on fire")

    builders = {"ok": lambda: Fake("ok", clock, log, 0.001, 0.001), "gpu": unavailable, "broken": broken}
    s = Engine(Variants(builders, "x:make"), Plan(rounds=5, steps=1, epochs=0), clock=clock)
    s.prepare()
    assert s.skipped == {"gpu": "needs CUDA"}
    assert "building it failed: OSError: disk on fire" in s.failed["broken"]
    assert list(s.works) == ["ok"]


def test_epochs_run_batches_per_epoch_steps_end_to_end():
    clock, log = FakeClock(), []
    plan = Plan(rounds=5, steps=1, warmup=0, round_warmup=0, bound=False, epochs=2)
    s = _engine(clock, log, plan, a=Fake("a", clock, log, 0.001, 0.001),
                 m=Fake("m", clock, log, 0.0, 0.001), b=Fake("b", clock, log, 0.0, 0.0005))
    s.prepare()
    epochs = s.epochs()
    assert set(epochs) == {"a", "b"}  # the first and the last variant by default
    assert [t.seconds for t in epochs["a"]] == pytest.approx([0.008, 0.008])  # 4 batches x 2 ms
    assert len(epochs["b"][0].steps) == 4


def test_an_epoch_needs_exactly_batches_per_epoch_batches():
    """Data that ends after batches_per_epoch batches (what iter(loader) gives): the epoch runs."""
    clock, log = FakeClock(), []
    plan = Plan(rounds=3, steps=1, warmup=2, round_warmup=1, bound=False, epochs=1)
    s = _engine(clock, log, plan, a=Fake("a", clock, log, 0.001, 0.001, batches=4))
    s.prepare()
    s.interleaved()
    epochs = s.epochs()
    assert not s.failed and len(epochs["a"][0].steps) == 4


def _run(plan: Plan, clock: FakeClock, **fakes) -> Result:
    from bench.measure.specs import VariantsSpec
    from bench.profile.job import run

    spec = VariantsSpec(workload="t:make", variants=tuple(fakes), device="cpu", batch_size=10, seed=0,
                        threads=None, data_dir="data", dataset="auto", limit=None, tools=(), counters=False,
                        plan=plan)
    builders = {name: (lambda f=f: f) for name, f in fakes.items()}
    from pathlib import Path

    return run(spec, Variants(builders, "t:make"), Path("."), clock=clock)


def test_data_that_ends_early_names_the_phase_and_rewind_and_keeps_the_rounds():
    clock, log = FakeClock(), []
    plan = Plan(rounds=6, steps=1, warmup=1, round_warmup=1, bound=False, epochs=1)
    # says 5 batches per epoch, yields 4: the rounds (2 batches each) work, the epoch cannot
    short = Fake("short", clock, log, 0.001, 0.001, batches=4)
    short.batches_per_epoch = 5
    result = _run(plan, clock, ok=Fake("ok", clock, log, 0.001, 0.001), short=short)
    why = result["short"].reason
    assert result["short"].status == "failed"
    assert why.startswith("`fetch()` ran out of data after 4 batches in the full epoch "
                          "(batches_per_epoch = 5)")
    assert "`restore()` must rewind the data stream (see `rewind()`)" in why
    assert len(result["short"].samples) == 6 and result.measured == ["ok", "short"]  # nothing lost


def test_data_that_ends_in_warm_up_is_said_so():
    clock, log = FakeClock(), []
    plan = Plan(rounds=5, steps=1, warmup=5, epochs=0, bound=False)
    s = _engine(clock, log, plan, a=Fake("a", clock, log, 0.001, 0.001, batches=3))
    s.prepare()
    assert s.failed["a"].startswith("`fetch()` ran out of data after 3 batches in the warm-up;")


def test_a_device_given_as_a_string_is_a_device_and_nonsense_is_refused():
    clock, log = FakeClock(), []
    work = Fake("a", clock, log, 0.001, 0.001)
    work.device = "cpu"
    s = _engine(clock, log, Plan(rounds=5, epochs=0), a=work)
    s.prepare()
    assert s.works["a"].device == torch.device("cpu")
    for bad, phrase in ((3, "device must be a torch.device or a name such as 'cpu', got int 3"),
                        ("gpu", "device 'gpu' is not a device name")):
        work = Fake("b", clock, log, 0.001, 0.001)
        work.device = bad
        with pytest.raises(WorkloadError, match=phrase):
            Variants({"b": lambda w=work: w}, "t:make").build("b")


def test_a_drift_inside_each_round_makes_the_ratio_not_measurable():
    """The first variant of every round runs 30% slow (a machine that speeds up within a round):
    the pairs have an order effect, and the report must not state a ratio."""
    clock, log = FakeClock(), []

    class Drift(Fake):
        def restore(self, state: int) -> None:
            super().restore(state)
            restores = sum(1 for e in log if str(e).startswith("restore"))
            clock.rate = 1.3 if restores % 2 == 1 else 1.0  # the first restore of each round

    plan = Plan(rounds=40, steps=1, warmup=1, round_warmup=0, bound=False, epochs=0)
    result = _run(plan, clock, a=Drift("a", clock, log, 0.001, 0.002), b=Drift("b", clock, log, 0.001, 0.002))
    from bench.measure import derive
    from bench.render import statements

    up = derive.speedup(result, "b", "a")
    assert not up.measurable and "order effect" in up.caveat
    assert "not measurable" in statements.headline(result)
    assert "faster than" not in statements.headline(result)


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


def test_stderr_inside_the_filter_shows_while_the_script_runs(tmp_path):
    """A whole observed script runs inside the filter: its warnings and progress bars must show
    as they come (and survive a crash), not when it ends."""
    import os
    import time

    from bench.measure.quiet import without_profiler_chatter

    terminal = tmp_path / "terminal"
    fd = os.open(terminal, os.O_WRONLY | os.O_CREAT)
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        with without_profiler_chatter(poll_s=0.05):
            os.write(2, b"USDT:2026-11-23 SyncActivityProfilerHandler.cpp:39] profiler_start\n")
            os.write(2, b"epoch 1: 10%\repoch 1: 20%\repoch 1: 3")  # a bar, mid-redraw
            deadline = time.monotonic() + 10
            while b"20%" not in terminal.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.02)
            shown = terminal.read_bytes()
            os.write(2, b"0%\n")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    assert shown == b"epoch 1: 10%\repoch 1: 20%\r"  # what was complete, live, without the chatter
    assert terminal.read_bytes() == b"epoch 1: 10%\repoch 1: 20%\repoch 1: 30%\n"


def test_chatter_inside_a_progress_bar_line_is_cut_and_the_bar_kept():
    from bench.measure.quiet import strip_chatter

    data = (b"\rmeasuring:  31%| 1303/4200USDT:2026-11-23 04:39:07 1:1 SyncActivityProfilerHandler.cpp:46]"
            b" profiler_stop\n\rmeasuring:  32%| 1340/4200")
    assert strip_chatter(data) == b"\rmeasuring:  31%| 1303/4200\rmeasuring:  32%| 1340/4200"


def test_parts_come_out_in_the_order_the_step_labels_them():
    """Not a set's order (which changes with the process's string hashing): the same workload
    gives the same columns in every run."""
    labels = ["zeta", "alpha", "mid", "beta", "omega", "gamma", "delta", "kappa"]

    class Labelled:
        device = torch.device("cpu")

        def fetch(self) -> int:
            return 0

        def step(self, batch: int, part) -> None:
            for name in labels:
                with part(name):
                    pass

    t = time_steps(Labelled(), 2)
    assert list(t.parts) == ["data", *labels]
