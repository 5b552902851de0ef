"""What a step is on scripts nobody here wrote: one round of the optimizers the script steps (a
GAN's two), every micro-batch counted once however the allocator reuses its memory, a loss
module never taken for the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench import cli
from bench.capture.rounds import PATIENCE, Rounds
from bench.capture.samples import StepSamples
from bench.measure.result import Result

SCRIPTS = Path(__file__).resolve().parents[1] / "examples" / "scripts"


def _steps(pattern: str, made: int, repeats: int = 6) -> tuple[list[int], Rounds]:
    """Each optimizer step of ``pattern`` (one letter an optimizer) repeated: the rounds ended."""
    optimizers = {c: torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1) for c in set(pattern)}
    rounds = Rounds(lambda: made)
    ended = [rounds.saw(optimizers[c], lambda c=c: f"t.py:{ord(c)}") for c in pattern * repeats]
    return ended, rounds


@pytest.mark.parametrize(("pattern", "made", "period"), [
    ("A", 1, 1),  # one optimizer: each of its steps
    ("DG", 2, 2),  # a GAN: the discriminator's then the generator's
    ("DDDDDG", 2, 6),  # a critic stepped five times a generator step (WGAN)
    ("ABCD", 4, 4),  # an optimizer per layer
])
def test_a_step_is_one_round_of_the_optimizers_the_script_steps(pattern, made, period):
    ended, rounds = _steps(pattern, made)
    assert rounds.period == period
    assert sum(ended) == len(pattern) * 6 // period  # every round ends one step, none lost
    assert rounds.round == [f"`SGD` at t.py:{ord(c)}" for c in pattern]


def test_an_optimizer_built_but_never_stepped_does_not_hold_the_steps_up():
    ended, rounds = _steps("A", made=2, repeats=PATIENCE + 4)  # the second is for a later phase
    assert rounds.period == 1 and sum(ended) == PATIENCE + 4


def test_micro_batches_are_counted_by_tensor_not_by_address():
    """The allocator hands a new micro-batch the freed one's memory: two tensors at one address
    (here two arrays' views of one buffer, as deterministic as the allocator is not) are two
    inputs; the same batch re-evaluated through a new view (an LBFGS closure) is one; a buffer
    refilled in place is a new input each time; slices of one tensor differ by address."""
    buffer = np.zeros((8, 4), dtype=np.float32)
    samples = StepSamples()
    model = torch.nn.Linear(4, 1)
    for _ in range(4):
        samples.input(model, torch.from_numpy(buffer))  # a new tensor each micro-step, the same memory
    samples.end_step()
    batch = torch.randn(16, 4)
    for _ in range(20):
        samples.input(model, batch.view(16, 4))  # a closure's re-evaluations: one input
    samples.end_step()
    staging = torch.zeros(8, 4)
    for _ in range(3):
        staging.copy_(torch.randn(8, 4))  # refilled in place: a new micro-batch each time
        samples.input(model, staging)
    samples.end_step()
    whole = torch.randn(32, 4)
    for i in range(4):
        samples.input(model, whole[8 * i:8 * (i + 1)])
    samples.end_step()
    assert [(n, k) for n, k, _ in samples.steps] == [(32, 4), (16, 1), (24, 3), (32, 4)]


def test_a_gan_step_is_the_discriminators_then_the_generators_and_its_loss_is_no_model(tmp_path: Path):
    out = tmp_path / "out"
    assert cli.main(["run", "--warmup", "2", "--steps", "6", "--tools", "none", "--observe-windows", "0",
                     "--out", str(out), str(SCRIPTS / "gan.py"), "--images", "1280"]) == 0
    m = Result.load(out / "run.json")["gan.py"]
    assert [r.split(" at ")[0] for r in m.process.step_round] == ["`Adam`", "`Adam`"]
    assert m.process.step_round[0] != m.process.step_round[1]  # two lines of the script
    assert m.batch_size == 64 and m.process.micro_batches == 1  # one batch a round, not 2 x 64
    models = [b for b in m.process.built if b.kind == "model"]
    assert [b.type for b in models] == ["Sequential", "Sequential"]  # BCELoss is no model
    assert models[0].where != models[1].where
    summary = (out / "summary.md").read_text()
    assert "a step = `Adam` at gan.py:" in summary and " then `Adam` at gan.py:" in summary
    assert "BCELoss" not in summary
    # where the memory goes, for two models and two optimizers: every part found, summing to the peak
    found = m.footprint.breakdown
    assert found is not None and sum(found.parts.values()) == found.peak
    assert found.parts["parameters"] > 0 and found.parts["optimizer state"] > 0 and found.saved_max > 0
    assert "## Where the memory goes" in summary and "MB of tensors at the step's peak" in summary
    assert "tensors_activations_mb" in (out / "summary.csv").read_text().splitlines()[0]


def test_a_new_batch_tensor_per_micro_step_is_every_micro_batch(tmp_path: Path):
    out = tmp_path / "out"
    assert cli.main(["run", "--warmup", "2", "--steps", "8", "--tools", "none", "--observe-windows", "0",
                     "--out", str(out), str(SCRIPTS / "accumulate_tokens.py"), "--iters", "14"]) == 0
    m = Result.load(out / "run.json")["accumulate_tokens.py"]
    assert m.batch_size == 32 and m.process.micro_batches == 4
    summary = (out / "summary.md").read_text()
    assert "(4 micro-batches of 8 per optimizer step: gradients accumulated)" in summary


def _split(shares: dict[str, float]) -> Result:
    from bench.measure.clock import Timing
    from bench.measure.environment import Environment
    from bench.measure.result import Measurement
    from bench.measure.specs import ScriptSpec

    steps = [Timing(0.01, [0.01], {p: [0.01 * s] for p, s in shares.items()}) for _ in range(5)]
    m = Measurement(name="t.py", samples=steps, parts=["data", "copy", "forward", "backward", "optimizer",
                                                         "other"])
    return Result(kind="script", spec=ScriptSpec(command=("t.py",)), measurements=[m],
                  machine=Environment.capture(torch.device("cpu")))


def test_a_bound_is_named_only_where_its_parts_take_most_of_the_step():
    from bench.render import script

    minority = script.verdict(_split({"data": 0.29, "forward": 0.2, "backward": 0.25, "optimizer": 0.17,
                                      "other": 0.09}), "t.py")
    assert minority.startswith("**no single bound**: data 29%, forward+backward 45%, optimizer 17%, other 9%")
    assert "compute-bound" not in minority and "for forward+backward, `vaebench run --try" in minority
    most = script.verdict(_split({"data": 0.1, "forward": 0.3, "backward": 0.45, "optimizer": 0.1,
                                  "other": 0.05}), "t.py")
    assert most.startswith("**compute-bound**: `forward` + `backward` take 75% of the step")


def test_forward_and_backward_at_a_small_fraction_of_the_peak_are_overhead_not_compute():
    """A small model's step is mostly forward and backward at 1% of the peak FLOP/s: its time goes
    to launching operators, and calling it compute-bound sends the user to the wrong fixes."""
    from bench.measure.result import Footprint
    from bench.render import script

    result = _split({"data": 0.1, "forward": 0.3, "backward": 0.45, "optimizer": 0.1, "other": 0.05})
    result.peak = {"flops": 100e9, "source": "t"}
    result["t.py"].footprint = Footprint(flops_per_step=1e6)  # 1 MFLOP in 10 ms: 0.1% of the peak
    small = script.verdict(result, "t.py")
    assert small.startswith("**overhead-bound**: `forward` + `backward` take 75% of the step at MFU 0.1%")
    assert "1 MFLOP per step" in script.headline(result)
    result["t.py"].footprint = Footprint(flops_per_step=0.5e9)  # 50% of the peak
    assert script.verdict(result, "t.py").startswith("**compute-bound**")
