"""Where a step's memory goes, against truth computed by hand: parameters, gradients and Adam's
state exact from the objects (a tied weight once), activations saved for backward exact (a
forward that keeps more alive shows it), a data set held as a tensor among the other tensors,
and the parts summing to the peak; the replay's rules on a hand-made event stream."""

from __future__ import annotations

import gc
from pathlib import Path

import torch
from torch import nn

from bench.measure.memory import MEMORY_PARTS, replay, storages
from tests.helpers import memory_of

BATCH, DATA = 256, 4096


class SiLUByHand(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * torch.sigmoid(h)  # saves h and sigmoid(h): two more (batch, 400) than ReLU's one


def _mlp(activation: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Linear(784, 400), activation, nn.Linear(400, 10))


def _already() -> dict[str, int]:
    """What the test process held before the test's model and data (other tests' leftovers): the
    breakdown counts every live tensor of the process, as it should in a user's."""
    gc.collect()
    held = {p: 0 for p in MEMORY_PARTS}
    for size, part in storages("cpu").values():
        held[part] += size
    return held


def _breakdown(model: nn.Module, batch: int = BATCH):
    torch.manual_seed(0)
    data = torch.randn(DATA, 784)
    optimizer = torch.optim.Adam(model.parameters())

    def step() -> None:
        x = data[torch.randint(0, len(data), (batch,))]  # (batch, 784)
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()  # pow saves the (batch, 10) logits
        optimizer.step()

    for _ in range(3):
        step()
    return memory_of(step, torch.device("cpu"))[1], data


def test_the_parts_are_the_objects_bytes_computed_by_hand():
    held = _already()
    found, data = _breakdown(_mlp(nn.ReLU()))
    params = (784 * 400 + 400 + 400 * 10 + 10) * 4
    assert found.parts["parameters"] - held["parameters"] == params
    # exp_avg, exp_avg_sq; a float32 step each
    assert found.parts["optimizer state"] - held["optimizer state"] == 2 * params + 4 * 4
    assert found.parts["gradients"] - held["gradients"] in (0, params)  # all or none, where the peak fell
    assert found.parts["other tensors"] - held["other tensors"] == data.numel() * 4  # the data set
    # saved for backward at once: the batch (Linear), the ReLU's output (also Linear's input), the logits
    assert found.saved_max == BATCH * (784 + 400 + 10) * 4
    assert set(found.parts) == set(MEMORY_PARTS) and sum(found.parts.values()) == found.peak
    assert found.at in ("forward", "backward", "optimizer")


def test_a_forward_that_keeps_more_alive_shows_it_in_activations():
    relu, _ = _breakdown(_mlp(nn.ReLU()))
    silu, _ = _breakdown(_mlp(SiLUByHand()))
    assert silu.saved_max - relu.saved_max == 2 * BATCH * 400 * 4  # h and sigmoid(h) besides the product


def test_a_dead_model_left_in_an_old_cycle_is_not_read_as_parameters():
    """A model and optimizer that died in a reference cycle after surviving a collection sit in
    the collector's old generation: the window's full collection frees them before the read
    step, so the parameters and optimizer state are the live model's alone."""
    held = _already()
    dead = _mlp(nn.ReLU())
    dead.cycle = [dead, torch.optim.Adam(dead.parameters())]  # type: ignore[assignment]
    gc.collect()  # survives: promoted to the old generation
    del dead  # now garbage there, which a young-generation collection would not free
    found, _ = _breakdown(_mlp(nn.ReLU()))
    params = (784 * 400 + 400 + 400 * 10 + 10) * 4
    assert found.parts["parameters"] - held["parameters"] == params
    assert found.parts["optimizer state"] - held["optimizer state"] == 2 * params + 4 * 4


def test_a_tied_weight_is_counted_once():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = nn.Linear(784, 400, bias=False)
            self.decode = nn.Linear(400, 784, bias=False)
            self.decode.weight = nn.Parameter(self.encode.weight.t())  # a view of the same storage

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decode(torch.relu(self.encode(x)))[:, :10]

    held = _already()
    found, _ = _breakdown(Tied())
    assert found.parts["parameters"] - held["parameters"] == 784 * 400 * 4


def test_large_activations_peak_in_forward_or_backward_with_them_live():
    found, _ = _breakdown(_mlp(nn.ReLU()), batch=DATA)
    assert found.at in ("forward", "backward")
    assert found.parts["activations"] >= DATA * 784 * 4  # at least the batch saved by the first Linear
    assert sum(found.parts.values()) == found.peak


def test_the_replay_splits_what_is_live_at_the_peak_by_what_each_block_is():
    start = {1: (100, "parameters"), 2: (50, "other tensors")}
    events = [(1.0, 10, 40),   # an activation: saved at 1.5, read back at 4.0
              (2.0, 11, 30),   # a temporary
              (3.0, 11, -30),
              (3.5, 12, 100),  # a gradient (one when the step ends): the peak is here
              (4.5, 10, -40),
              (5.0, 13, 10)]   # the batch of the next step: a temporary, after the peak
    saved = [(1.5, 10, True), (4.0, 10, False)]
    found = replay(start, events, saved, {12: (100, "gradients"), 1: (100, "parameters")})
    assert found.peak == 100 + 50 + 40 + 100
    assert found.parts == {"parameters": 100, "gradients": 100, "optimizer state": 0, "activations": 40,
                           "other tensors": 50, "temporaries": 0}
    assert found.saved_max == 40


def test_an_address_reused_is_a_new_block_and_a_batch_held_after_backward_is_no_activation():
    events = [(1.0, 10, 40), (2.0, 10, -40), (3.0, 10, 60), (4.0, 11, 5)]  # 10 freed, then reused
    saved = [(1.5, 10, True), (1.8, 10, False)]  # the first block's life as an activation ended at 1.8
    found = replay({}, events, saved, {})
    assert found.peak == 65 and found.parts["activations"] == 0 and found.parts["temporaries"] == 65


def test_fake_tensors_left_by_a_compile_do_not_break_the_breakdown():
    """torch.compile leaves FakeTensors behind whose data pointer raises: they hold no memory."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = torch.randn(1000, 1000)
    found, _ = _breakdown(_mlp(nn.ReLU()))
    assert sum(found.parts.values()) == found.peak and fake.shape == (1000, 1000)


def test_the_curve_rises_in_forward_and_falls_in_backward():
    """How live memory moves through one step, above what stays through it: the most of it is
    reached by the end of forward (activations saved), and backward ends lower (they are freed)."""
    found, _ = _breakdown(_mlp(nn.ReLU()), batch=DATA)
    phases = {name: (first, last) for first, last, name in found.phases}
    assert {"forward", "backward", "optimizer"} <= set(phases)
    start, end = phases["forward"][0], phases["backward"][1]
    forward_top = max(found.curve[start:phases["backward"][0] + 1])
    assert forward_top >= DATA * 784 * 4 / 2**20  # the batch saved for backward, at least
    assert found.curve[end] < forward_top and max(found.curve) <= found.peak / 2**20


TOO_LARGE = """
    import torch
    from torch import nn

    class Expands(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(64, 64)
            self.width = 64

        def forward(self, x):
            wide = x.new_empty(x.shape[0], self.width)  # (batch, width): 20 TB once width is 10**11
            return self.linear(x) + wide[:, :64].zero_()

    model = Expands()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    kept = torch.zeros(512, 1024)  # 2 MB the script holds across steps
    for step in range(200):
        if step == 45:
            model.width = 10**11  # a setting tried too large, part-way
        loss = model(torch.randn(50, 64)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
"""


def test_out_of_memory_is_explained_and_the_measured_steps_kept(tmp_path, capsys):
    """The CPU allocator refuses a 20 TB block in forward of step 46: the report names the line,
    the part of the step, how much was asked, what was live (the 2 MB the script holds among
    other tensors), the measured step's breakdown beside it; the measured steps are kept; the
    exit is the script's failure."""
    from bench import cli
    from bench.measure.result import Result
    from tests.helpers import write

    (tmp_path / "bench").mkdir()  # a user's own folder named like ours: the script's lines are still its own
    script = write(tmp_path / "bench", TOO_LARGE, "train.py")
    out = tmp_path / "out"
    code = cli.main(["run", "--warmup", "2", "--steps", "60", "--tools", "none", "--observe-windows", "0",
                     "--out", str(out), str(script)])
    assert code == 1
    m = Result.load(out / "run.json")["train.py"]
    oom = m.process.oom
    assert oom is not None and oom.step == 46 and oom.phase == "forward" and oom.device == "cpu"
    assert oom.line == "train.py:12" and oom.code.startswith("wide = x.new_empty")
    assert [b.where for b in m.process.built if b.kind == "optimizer"] == ["train.py:16"]
    assert oom.asked == 50 * 10**11 * 4
    assert oom.live["other tensors"] >= 512 * 1024 * 4 and oom.live["parameters"] == (64 * 64 + 64) * 4
    assert any(s.startswith("(512, 1024) float32") for s in oom.largest)
    assert len(m.samples) == 45 - 2 - 3 - 1 and m.footprint.breakdown is not None  # warm-up, memory, FLOPs
    said = capsys.readouterr().out
    assert "`train.py` ran out of memory in forward of its step 46 at `train.py:12`" in said
    assert "asking for 18,626.5 GB" in said and "The step measured for memory peaked at" in said
    assert "## Out of memory" in (out / "summary.md").read_text()


def test_a_batch_too_large_from_the_first_step_is_explained(tmp_path, capsys):
    """The most common out of memory: the very first step fails. Nothing was timed, yet the run
    is written with the explanation (it used to end in one line and a traceback)."""
    from bench import cli
    from bench.measure.result import Result
    from tests.helpers import write

    script = write(tmp_path, TOO_LARGE.replace("step == 45", "step == 0"), "train.py")
    out = tmp_path / "out"
    code = cli.main(["run", "--warmup", "2", "--steps", "60", "--tools", "none", "--out", str(out),
                     str(script)])
    assert code == 1
    m = Result.load(out / "run.json")["train.py"]
    assert m.status == "failed" and not m.samples
    assert m.process.oom is not None and m.process.oom.step == 1 and m.process.oom.phase == "forward"
    summary = (out / "summary.md").read_text()
    assert "No step completed" in summary and "## Out of memory" in summary
    assert "no step had been measured before it, so its batch and outputs are among the other " \
           "tensors" in summary
    assert "`train.py` ran out of memory in forward of its step 1 at `train.py:12`" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert "Out of memory" in page and 'class="headline"' not in page  # no empty headline box


def test_out_of_memory_in_the_scripts_setup_is_not_called_a_step(tmp_path, capsys):
    """An allocation too large while the script sets up, before any step began: said as such (no
    step, no batch), the live parts still read."""
    from bench import cli
    from bench.measure.result import Result
    from tests.helpers import write

    script = write(tmp_path, "import torch\nmodel = torch.nn.Linear(64, 64)\nbig = torch.empty(10**13)\n",
                   "setup.py")
    out = tmp_path / "out"
    assert cli.main(["run", "--warmup", "2", "--tools", "none", "--out", str(out), str(script)]) == 1
    oom = Result.load(out / "run.json")["setup.py"].process.oom
    assert oom is not None and oom.step == 0 and oom.live["parameters"] >= (64 * 64 + 64) * 4  # + leftovers
    assert oom.phase == ""  # torch's modules built in setup, not run: no part of a step
    said = capsys.readouterr()
    assert "`setup.py` ran out of memory before its first step at `setup.py:3`" in said.out
    assert "no step had begun" in said.out and "The failing step's batch" not in said.out
    assert "(before its first step)" in said.err


def test_the_largest_tensors_are_named_by_their_storage_not_a_view():
    """A 1 MB batch and a 2-row view of it: the batch's own shape; a storage alive only through a
    view is said to be a view; a scalar beside them is not among "the largest"."""
    from bench.capture.oom import _largest

    batch, scalar = torch.zeros(1024, 256), torch.tensor(3.0)
    head = batch[:2]  # (2, 256): the same storage
    alone = torch.empty(0).set_(torch.zeros(512, 256).untyped_storage(), 0, (2, 256))  # no whole tensor
    ptrs = {t.untyped_storage().data_ptr() for t in (batch, alone, scalar)}
    assert _largest("cpu", ptrs) == ["(1024, 256) float32, 1.0 MB",
                                     "(2, 256) float32, 512.0 KB (a view of it)"]
    assert head.shape == (2, 256)


def test_a_script_under_a_memory_limit_that_it_outgrows(tmp_path):
    """examples/scripts/out_of_memory.py caps its own address space (RLIMIT_AS, in a child
    process) and grows its batch until an allocation fails: explained, and the limit the script
    set does not stop vaebench writing its report (it runs in the script's process). Its hidden
    layers narrowed: the same failure for a fraction of the compute."""
    import subprocess
    import sys

    from bench.measure.result import Result

    out = tmp_path / "out"
    script = Path(__file__).parents[1] / "examples" / "scripts" / "out_of_memory.py"
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--steps", "60", "--warmup", "2",
                           "--tools", "none", "--observe-windows", "0", "--out", str(out), str(script),
                           "--hidden", "64"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr[-2000:]
    oom = Result.load(out / "run.json")["out_of_memory.py"].process.oom
    assert oom is not None and oom.line.startswith("out_of_memory.py:") and oom.asked and oom.step > 41
    summary = (out / "summary.md").read_text()
    assert "ran out of memory" in summary and "Out of memory" in (out / "report.html").read_text()
    assert "The failing step's batch: " in summary and "against 64 in the measured steps" in summary


def test_the_allocators_own_figures_are_said_beside_the_breakdown_on_cuda():
    """Reserved against allocated (the slack: fragmentation) and the device's capacity, as a
    CUDA run records them (rendered here from a hand-made record: no GPU on this machine)."""
    from bench.measure.clock import Timing
    from bench.measure.result import Breakdown, Footprint, Measurement, Result
    from bench.measure.specs import ScriptSpec
    from bench.render import memory
    from tests.helpers import TEST_ENV

    found = Breakdown(device="cuda", peak=3 * 2**30, parts={"parameters": 2**30, "temporaries": 2 * 2**30},
                      cuda={"max_allocated": 3 * 2**30, "max_reserved": 4 * 2**30, "capacity": 80 * 2**30})
    m = Measurement(name="t.py", samples=[Timing(0.01, [0.01])], footprint=Footprint(breakdown=found))
    result = Result(kind="script", spec=ScriptSpec(command=("t.py",)), machine=TEST_ENV, measurements=[m])
    said = "\n".join(memory.markdown(result))
    assert "`t.py` on the GPU: the allocator's peak 3.0 GB allocated, 4.0 GB reserved (25% of it slack), " \
           "of the device's 80.0 GB." in said


def test_a_step_with_torch_func_or_its_own_saved_tensor_hooks_runs_as_it_would():
    """torch.func refuses to run under any saved-tensor hooks, and a script's own (save_on_cpu)
    must not be replaced for the step: the step runs, the breakdown says what it could not tell."""
    model = nn.Linear(16, 1)

    def with_func() -> None:
        grads = torch.func.grad(lambda w: (torch.randn(8, 16) @ w).pow(2).sum())(model.weight.detach().t())
        assert grads.shape == (16, 1)

    def offloaded() -> None:
        with torch.autograd.graph.save_on_cpu():
            model(torch.randn(8, 16)).sum().backward()

    _, found = memory_of(with_func, torch.device("cpu"))
    assert "torch.func ran in the step" in found.caveat
    with torch.autograd.graph.save_on_cpu():  # the script's own hooks, active across the step
        _, found = memory_of(lambda: model(torch.randn(8, 16)).sum().backward(), torch.device("cpu"))
    assert "the script's own saved-tensor hooks were active" in found.caveat
    _, found = memory_of(offloaded, torch.device("cpu"))  # pushed inside the step, over ours: fine
    assert found.caveat == "" and torch._C._autograd._top_saved_tensors_default_hooks(False) is None
